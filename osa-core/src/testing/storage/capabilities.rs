//! The optional capabilities of
//! [`ValidationRunStore`](crate::validation::ValidationRunStore), and how a backend declares
//! which it offers.
//!
//! A backend offers a capability by returning `Some` from its accessor:
//!
//! | capability | accessor | trait |
//! |---|---|---|
//! | `step_hand_off` | [`ValidationRunStore::step_hand_off`](crate::validation::ValidationRunStore::step_hand_off) | [`StepHandOff`](crate::validation::StepHandOff) |
//! | `feature_staging` | [`ValidationRunStore::feature_staging`](crate::validation::ValidationRunStore::feature_staging) | [`FeatureStaging`](crate::validation::FeatureStaging) |
//!
//! [`storage_conformance!`](crate::storage_conformance) takes the capabilities a
//! backend does not offer as `without: [...]`. The declaration cannot lie: this
//! module's tests (`capabilities::step_hand_off`, `capabilities::feature_staging`)
//! call [`step_hand_off::missing`] for a declared-missing capability and
//! [`step_hand_off::offered`] otherwise (likewise for `feature_staging`), and a check
//! that needs a capability (marked `if capability` in its module's list) calls
//! `offered` itself when the capability is not declared missing, and is replaced by
//! a test calling `missing` when it is.

/// The list of this module's checks, expanded by
/// [`storage_conformance!`](crate::storage_conformance) into one test per capability,
/// asserting what the backend declares: `$s` and `$f` are `offered` or `missing`, the
/// names of the functions that assert it.
#[doc(hidden)]
#[macro_export]
macro_rules! __storage_capabilities_checks {
    ($make:expr, $s:ident, $f:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn step_hand_off() {
            let (store, _guard) = $make.await;
            $crate::testing::storage::capabilities::step_hand_off::$s(&store);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn feature_staging() {
            let (store, _guard) = $make.await;
            $crate::testing::storage::capabilities::feature_staging::$f(&store);
        }
    };
}
#[doc(hidden)]
pub use crate::__storage_capabilities_checks as checks;

/// [`StepHandOff`](crate::validation::StepHandOff): a step commit that leases the
/// run's next job to the committer.
pub mod step_hand_off {
    use crate::validation::{StepHandOff, ValidationRunStore};

    /// The backend's [`StepHandOff`]; panics if it offers none.
    #[track_caller]
    pub fn offered<S: ValidationRunStore>(store: &S) -> &dyn StepHandOff {
        store.step_hand_off().expect(
            "step_hand_off() is None: a backend that offers no StepHandOff declares it \
             with `storage_conformance!(make(), without: [step_hand_off])`",
        )
    }

    /// Panics unless the backend offers no [`StepHandOff`], as it declares.
    #[track_caller]
    pub fn missing<S: ValidationRunStore>(store: &S) {
        assert!(
            store.step_hand_off().is_none(),
            "the backend is declared `without: [step_hand_off]` but offers a StepHandOff: \
             remove it from the declaration so the checks that need it run"
        );
    }
}

/// [`FeatureStaging`](crate::validation::FeatureStaging): feature rows written ahead
/// of the finalize, in a transaction the finalize commits.
pub mod feature_staging {
    use crate::validation::{FeatureStaging, ValidationRunStore};

    /// The backend's [`FeatureStaging`]; panics if it offers none.
    #[track_caller]
    pub fn offered<S: ValidationRunStore>(store: &S) -> &dyn FeatureStaging {
        store.feature_staging().expect(
            "feature_staging() is None: a backend that offers no FeatureStaging declares it \
             with `storage_conformance!(make(), without: [feature_staging])`",
        )
    }

    /// Panics unless the backend offers no [`FeatureStaging`], as it declares.
    #[track_caller]
    pub fn missing<S: ValidationRunStore>(store: &S) {
        assert!(
            store.feature_staging().is_none(),
            "the backend is declared `without: [feature_staging]` but offers a FeatureStaging: \
             remove it from the declaration so the checks that need it run"
        );
    }
}

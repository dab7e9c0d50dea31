//! Encoder for Postgres' binary `COPY` format.
//!
//! Layout: an 11-byte signature, a flags word and a header-extension length; then per
//! tuple a 16-bit field count and, per field, a 32-bit length (-1 for NULL) followed by
//! the value in the type's binary send format; then a 16-bit -1 trailer.

use chrono::{DateTime, NaiveDate, Utc};
use osa_core::feature::FeatureValue;

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds between the Unix epoch and Postgres' epoch (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// A buffer of binary COPY data.
#[derive(Debug, Default)]
pub(crate) struct CopyBuffer {
    bytes: Vec<u8>,
}

impl CopyBuffer {
    /// A buffer holding the header.
    pub(crate) fn new() -> Self {
        let mut bytes = Vec::with_capacity(1 << 16);
        bytes.extend_from_slice(SIGNATURE);
        bytes.extend_from_slice(&0i32.to_be_bytes());
        bytes.extend_from_slice(&0i32.to_be_bytes());
        CopyBuffer { bytes }
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Takes the bytes written so far, leaving the buffer empty (no header).
    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }

    pub(crate) fn start_tuple(&mut self, fields: usize) {
        let fields = i16::try_from(fields).expect("feature tables have fewer than 32768 columns");
        self.bytes.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, data: &[u8]) {
        let len = i32::try_from(data.len()).expect("a feature value is smaller than 2 GiB");
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(data);
    }

    pub(crate) fn null(&mut self) {
        self.bytes.extend_from_slice(&(-1i32).to_be_bytes());
    }

    pub(crate) fn text(&mut self, s: &str) {
        self.field(s.as_bytes());
    }

    pub(crate) fn int4(&mut self, v: i32) {
        self.field(&v.to_be_bytes());
    }

    pub(crate) fn int8(&mut self, v: i64) {
        self.field(&v.to_be_bytes());
    }

    pub(crate) fn uuid(&mut self, v: &uuid::Uuid) {
        self.field(v.as_bytes());
    }

    pub(crate) fn timestamptz(&mut self, t: &DateTime<Utc>) {
        self.int8(t.timestamp_micros() - PG_EPOCH_MICROS);
    }

    fn date(&mut self, d: &NaiveDate) {
        let days = d.signed_duration_since(NaiveDate::default()).num_days() - PG_EPOCH_DAYS;
        self.field(&(days as i32).to_be_bytes());
    }

    /// A feature value in the binary format of its column type.
    pub(crate) fn value(&mut self, value: &FeatureValue) {
        match value {
            FeatureValue::Null => self.null(),
            FeatureValue::Text(s) => self.text(s),
            FeatureValue::Timestamp(t) => self.timestamptz(t),
            FeatureValue::Date(d) => self.date(d),
            FeatureValue::Uuid(u) => self.uuid(u),
            FeatureValue::Float(f) => self.field(&f.to_be_bytes()),
            FeatureValue::Integer(i) => self.int8(*i),
            FeatureValue::Boolean(b) => self.field(&[u8::from(*b)]),
            FeatureValue::Json(v) => {
                // jsonb's binary format: a version byte (1) and the JSON text.
                let mut data = vec![1u8];
                data.extend_from_slice(v.to_string().as_bytes());
                self.field(&data);
            }
        }
    }

    /// Appends the trailer.
    pub(crate) fn finish(&mut self) {
        self.bytes.extend_from_slice(&(-1i16).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_dates_and_times() {
        let mut buf = CopyBuffer::new();
        assert_eq!(buf.len(), 19);
        buf.start_tuple(2);
        buf.value(&FeatureValue::Date(
            NaiveDate::from_ymd_opt(2000, 1, 2).unwrap(),
        ));
        buf.value(&FeatureValue::Timestamp(
            "2000-01-01T00:00:01Z".parse().unwrap(),
        ));
        buf.finish();
        let bytes = buf.take();
        assert_eq!(&bytes[19..21], &2i16.to_be_bytes());
        assert_eq!(&bytes[21..25], &4i32.to_be_bytes());
        assert_eq!(&bytes[25..29], &1i32.to_be_bytes());
        assert_eq!(&bytes[29..33], &8i32.to_be_bytes());
        assert_eq!(&bytes[33..41], &1_000_000i64.to_be_bytes());
        assert_eq!(&bytes[41..], &(-1i16).to_be_bytes());
    }
}

//! `TEXT` encoding of records into object content.

/// Text format of records in an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFormat {
    /// Whether the key precedes each value.
    pub store_keys: bool,
    /// Bytes written between the key and the value when `store_keys` is set.
    pub kv_delimiter: Vec<u8>,
    /// Bytes written after every record; empty for `NULL`.
    pub record_delimiter: Vec<u8>,
}

/// Translates the API's `record_delimiter` into the bytes written after each record.
///
/// Both a real newline and the two characters backslash and `n` mean a newline,
/// and `NULL` means no delimiter. Returns `None` for a value outside the API's enum.
pub fn record_delimiter_bytes(value: &str) -> Option<Vec<u8>> {
    match value {
        "\n" | "\\n" => Some(b"\n".to_vec()),
        "," | ";" | "|" => Some(value.as_bytes().to_vec()),
        "NULL" => Some(Vec::new()),
        _ => None,
    }
}

impl TextFormat {
    /// Appends one record to `out`. A missing key or a missing value (a tombstone)
    /// is written as empty bytes, so a tombstone never stops the task.
    pub fn append(&self, out: &mut Vec<u8>, key: Option<&[u8]>, value: Option<&[u8]>) {
        if self.store_keys {
            out.extend_from_slice(key.unwrap_or_default());
            out.extend_from_slice(&self.kv_delimiter);
        }
        out.extend_from_slice(value.unwrap_or_default());
        out.extend_from_slice(&self.record_delimiter);
    }

    /// Returns the number of bytes [`TextFormat::append`] adds for a record.
    pub fn encoded_len(&self, key: Option<&[u8]>, value: Option<&[u8]>) -> usize {
        let key_len = if self.store_keys {
            key.map_or(0, <[u8]>::len) + self.kv_delimiter.len()
        } else {
            0
        };
        key_len + value.map_or(0, <[u8]>::len) + self.record_delimiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(store_keys: bool, delimiter: &str) -> TextFormat {
        TextFormat {
            store_keys,
            kv_delimiter: b":".to_vec(),
            record_delimiter: record_delimiter_bytes(delimiter).expect("valid delimiter"),
        }
    }

    #[test]
    fn delimiter_accepts_both_newline_forms() {
        assert_eq!(record_delimiter_bytes("\n"), Some(b"\n".to_vec()));
        assert_eq!(record_delimiter_bytes("\\n"), Some(b"\n".to_vec()));
        assert_eq!(record_delimiter_bytes("NULL"), Some(Vec::new()));
        assert_eq!(record_delimiter_bytes("\t"), None);
    }

    #[test]
    fn append_writes_key_value_and_delimiter() {
        let mut out = Vec::new();
        let f = format(true, ",");
        f.append(&mut out, Some(b"UA"), Some(b"{\"a\":1}"));
        f.append(&mut out, None, Some(b"v"));
        assert_eq!(out, b"UA:{\"a\":1},:v,");
    }

    #[test]
    fn tombstone_writes_empty_value() {
        let mut out = Vec::new();
        format(true, "\\n").append(&mut out, Some(b"k"), None);
        assert_eq!(out, b"k:\n");
        let mut out = Vec::new();
        format(false, "NULL").append(&mut out, Some(b"k"), None);
        assert!(out.is_empty());
    }

    #[test]
    fn encoded_len_matches_append() {
        for (keys, delim) in [(true, ","), (false, "\n"), (true, "NULL"), (false, "|")] {
            let f = format(keys, delim);
            let mut out = Vec::new();
            f.append(&mut out, Some(b"key"), Some(b"value"));
            assert_eq!(out.len(), f.encoded_len(Some(b"key"), Some(b"value")));
        }
    }
}

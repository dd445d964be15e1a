//! Object keys of chunks.

use chrono::TimeZone;
use chrono_tz::Tz;

/// The time directory levels of `partition_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionFormat {
    Year,
    Month,
    Day,
    Hour,
    Minute,
}

impl PartitionFormat {
    /// Parses the API value (`yyyy`, `yyyy/MM`, `yyyy/MM/dd`, `yyyy/MM/dd/HH`, `yyyy/MM/dd/HH/mm`).
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "yyyy" => Some(Self::Year),
            "yyyy/MM" => Some(Self::Month),
            "yyyy/MM/dd" => Some(Self::Day),
            "yyyy/MM/dd/HH" => Some(Self::Hour),
            "yyyy/MM/dd/HH/mm" => Some(Self::Minute),
            _ => None,
        }
    }

    fn strftime(self) -> &'static str {
        match self {
            Self::Year => "%Y",
            Self::Month => "%Y/%m",
            Self::Day => "%Y/%m/%d",
            Self::Hour => "%Y/%m/%d/%H",
            Self::Minute => "%Y/%m/%d/%H/%M",
        }
    }
}

/// Key layout of the chunks of one task.
#[derive(Debug, Clone)]
pub struct ObjectNaming {
    /// `obs_path` without leading or trailing separators; may be empty.
    pub prefix: String,
    pub partition_format: PartitionFormat,
    pub timezone: Tz,
}

impl ObjectNaming {
    /// Returns the key of the chunk of `topic`/`partition` whose first record has
    /// `first_offset` and `first_timestamp_ms`.
    ///
    /// The key is a function of the data alone, so a chunk written again after a
    /// crash lands on the same key. Offsets are zero-padded to 20 digits so that
    /// keys sort by offset.
    pub fn chunk_key(
        &self,
        topic: &str,
        partition: i32,
        first_offset: i64,
        first_timestamp_ms: i64,
    ) -> String {
        let time = self
            .timezone
            .timestamp_millis_opt(first_timestamp_ms)
            .single()
            .unwrap_or_else(|| {
                self.timezone
                    .timestamp_millis_opt(0)
                    .single()
                    .expect("the epoch exists in every time zone")
            });
        let dir = time.format(self.partition_format.strftime()).to_string();
        let file = format!("{topic}+{partition}+{first_offset:020}.txt");
        join_key(&[&self.prefix, topic, &dir, &file])
    }
}

/// Joins key pieces with `/`, leaving out empty pieces and doubled separators.
pub fn join_key(pieces: &[&str]) -> String {
    pieces
        .iter()
        .flat_map(|piece| piece.split('/'))
        .filter(|segment| !segment.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
/// Parses the file name of a chunk key into topic, partition and first offset.
pub fn parse_chunk_file(name: &str) -> Option<(&str, i32, i64)> {
    let stem = name.strip_suffix(".txt")?;
    let (rest, offset) = stem.rsplit_once('+')?;
    let (topic, partition) = rest.rsplit_once('+')?;
    Some((topic, partition.parse().ok()?, offset.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming(prefix: &str, format: &str, tz: &str) -> ObjectNaming {
        ObjectNaming {
            prefix: prefix.to_string(),
            partition_format: PartitionFormat::parse(format).expect("valid format"),
            timezone: tz.parse().expect("valid time zone"),
        }
    }

    #[test]
    fn chunk_key_matches_documented_example() {
        // 2026-12-04T13:05:00Z
        let ts = 1_796_389_500_000;
        let key = naming("events", "yyyy/MM/dd/HH", "UTC").chunk_key("orders", 3, 12345, ts);
        assert_eq!(
            key,
            "events/orders/2026/12/04/13/orders+3+00000000000000012345.txt"
        );
    }

    #[test]
    fn chunk_key_uses_time_zone_and_every_format() {
        let ts = 1_796_389_500_000;
        let cases = [
            ("yyyy", "2026"),
            ("yyyy/MM", "2026/12"),
            ("yyyy/MM/dd", "2026/12/04"),
            ("yyyy/MM/dd/HH", "2026/12/04/21"),
            ("yyyy/MM/dd/HH/mm", "2026/12/04/21/05"),
        ];
        for (format, dir) in cases {
            let key = naming("", format, "Asia/Shanghai").chunk_key("t", 0, 0, ts);
            assert_eq!(key, format!("t/{dir}/t+0+00000000000000000000.txt"));
        }
    }

    #[test]
    fn join_key_drops_empty_and_doubled_separators() {
        assert_eq!(join_key(&["/a//b/", "", "c/"]), "a/b/c");
        assert_eq!(join_key(&["", "t", "f.txt"]), "t/f.txt");
    }

    #[test]
    fn parse_chunk_file_round_trips() {
        let key = naming("p", "yyyy", "UTC").chunk_key("my+topic", 7, 42, 0);
        let file = key.rsplit('/').next().expect("file name");
        assert_eq!(parse_chunk_file(file), Some(("my+topic", 7, 42)));
        assert_eq!(parse_chunk_file("x.txt"), None);
    }
}

//! Chunk storage: create-if-absent puts that carry each chunk's offsets.
//!
//! Both backends make the put of a key atomic and exclusive: the first writer
//! of a key wins, and a later writer learns the winner's offsets from the
//! object's metadata so that it can continue after them instead of writing a
//! second copy of the same records.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, AttributeValue, Attributes, ClientOptions, GetOptions, ObjectStore, PutMode,
    PutOptions, PutPayload, RetryConfig,
};

/// Offsets of the records in one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    pub first_offset: i64,
    pub last_offset: i64,
    pub record_count: u64,
}

const META_FIRST: &str = "weir-first-offset";
const META_LAST: &str = "weir-last-offset";
const META_COUNT: &str = "weir-record-count";
const META_SOURCE: &str = "weir-source";

impl ChunkMeta {
    fn pairs(&self) -> [(&'static str, String); 3] {
        [
            (META_FIRST, self.first_offset.to_string()),
            (META_LAST, self.last_offset.to_string()),
            (META_COUNT, self.record_count.to_string()),
        ]
    }

    fn from_lookup(mut get: impl FnMut(&str) -> Option<String>) -> Option<Self> {
        Some(Self {
            first_offset: get(META_FIRST)?.parse().ok()?,
            last_offset: get(META_LAST)?.parse().ok()?,
            record_count: get(META_COUNT)?.parse().ok()?,
        })
    }
}

/// Result of a create-if-absent put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// This writer created the object.
    Created,
    /// The key already held a chunk, written by another writer or by an earlier
    /// life of this partition; its offsets are returned.
    Exists(ChunkMeta),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A failure worth retrying: a 5xx, a reset, a timeout, a full disk.
    #[error("object store request for {key} failed: {message}")]
    Transient { key: String, message: String },
    /// A failure that retrying will not fix: bad credentials, a missing bucket.
    #[error("object store rejected {key}: {message}")]
    Permanent { key: String, message: String },
    /// The key contains an object that Weir did not write, or whose metadata was lost.
    #[error(
        "object {key} exists but has no weir offset metadata; move it away so that the task can write its chunk"
    )]
    ForeignObject { key: String },
    /// A chunk at the key of the same topic and partition, read from another instance,
    /// whose offsets do not describe this task's records.
    #[error(
        "object {key} contains records of instance {instance_id}, not of this task's instance; adopting it would skip this task's records, so give the task an obs_path or bucket of its own"
    )]
    OtherInstance { key: String, instance_id: String },
}

/// Checks that an existing object was written from the instance `own`. Objects
/// without the attribute predate it and pass.
fn check_source(key: &str, own: &str, found: Option<String>) -> Result<(), StoreError> {
    match found {
        Some(found) if !own.is_empty() && found != own => Err(StoreError::OtherInstance {
            key: key.to_string(),
            instance_id: found,
        }),
        _ => Ok(()),
    }
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

/// Destination of a task's chunks.
#[async_trait]
pub trait ChunkStore: Send + Sync {
    /// Names the destination for logs, without credentials.
    fn describe(&self) -> String;

    /// Writes `body` under `key` unless the key exists.
    async fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        meta: ChunkMeta,
    ) -> Result<PutOutcome, StoreError>;

    /// Reads the offsets of the chunk under `key`, or `None` when there is none.
    async fn head(&self, key: &str) -> Result<Option<ChunkMeta>, StoreError>;
}

/// A directory tree: bucket `B` is the directory `root/B`, and a key is a path below it.
///
/// Chunks are written to a temporary file beside the buckets, synced, given
/// their offsets as `user.weir.*` extended attributes, and then hard-linked
/// into place. `link(2)` fails when the target exists, which makes the put
/// create-if-absent, and the attributes travel with the inode, so an object is
/// never visible without its offsets. The file system must support user
/// extended attributes (ext4, xfs, btrfs and tmpfs do).
pub struct LocalStore {
    bucket_dir: PathBuf,
    tmp_dir: PathBuf,
    bucket: String,
    source_id: String,
}

impl LocalStore {
    /// Builds the store of `bucket` under `root` for records of the instance `source_id`.
    pub fn new(root: &Path, bucket: &str, source_id: &str) -> Self {
        Self {
            bucket_dir: root.join(bucket),
            tmp_dir: root.join(".weir-tmp"),
            bucket: bucket.to_string(),
            source_id: source_id.to_string(),
        }
    }

    fn put_blocking(
        &self,
        key: &str,
        body: &[u8],
        meta: ChunkMeta,
    ) -> Result<PutOutcome, StoreError> {
        use std::io::Write;

        let io_error = |e: std::io::Error| StoreError::Transient {
            key: key.to_string(),
            message: e.to_string(),
        };
        let target = self.bucket_dir.join(key);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        std::fs::create_dir_all(&self.tmp_dir).map_err(io_error)?;
        let tmp = self.tmp_dir.join(uuid::Uuid::new_v4().to_string());
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(body)?;
            for (name, value) in meta.pairs() {
                set_xattr(&tmp, name, &value)?;
            }
            if !self.source_id.is_empty() {
                set_xattr(&tmp, META_SOURCE, &self.source_id)?;
            }
            file.sync_all()?;
            std::fs::hard_link(&tmp, &target)
        })();
        let _ = std::fs::remove_file(&tmp);
        match result {
            Ok(()) => {
                if let Some(parent) = target.parent() {
                    std::fs::File::open(parent)
                        .and_then(|dir| dir.sync_all())
                        .map_err(io_error)?;
                }
                Ok(PutOutcome::Created)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match self.head_blocking(key)? {
                    Some(existing) => Ok(PutOutcome::Exists(existing)),
                    None => Err(StoreError::ForeignObject {
                        key: key.to_string(),
                    }),
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => Err(StoreError::Permanent {
                key: key.to_string(),
                message: format!(
                    "the file system under {} does not support user extended attributes",
                    self.tmp_dir.display()
                ),
            }),
            Err(e) => Err(io_error(e)),
        }
    }

    fn head_blocking(&self, key: &str) -> Result<Option<ChunkMeta>, StoreError> {
        let path = self.bucket_dir.join(key);
        if !path.exists() {
            return Ok(None);
        }
        let meta = ChunkMeta::from_lookup(|name| get_xattr(&path, name)).ok_or_else(|| {
            StoreError::ForeignObject {
                key: key.to_string(),
            }
        })?;
        check_source(key, &self.source_id, get_xattr(&path, META_SOURCE))?;
        Ok(Some(meta))
    }
}

fn xattr_name(name: &str) -> std::ffi::CString {
    let name = format!(
        "user.{}",
        name.replace('-', "_").replacen("weir_", "weir.", 1)
    );
    std::ffi::CString::new(name).expect("attribute names contain no NUL")
}

fn set_xattr(path: &Path, name: &str, value: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let c_name = xattr_name(name);
    // SAFETY: both strings are NUL-terminated and outlive the call; the value
    // pointer and length describe a live byte slice.
    let rc = unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn get_xattr(path: &Path, name: &str) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let c_name = xattr_name(name);
    let mut buf = [0u8; 64];
    // SAFETY: both strings are NUL-terminated; the buffer pointer and length
    // describe a live, writable buffer.
    let len = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let len = usize::try_from(len).ok()?;
    String::from_utf8(buf.get(..len)?.to_vec()).ok()
}

#[async_trait]
impl ChunkStore for Arc<LocalStore> {
    fn describe(&self) -> String {
        format!(
            "local bucket {} at {}",
            self.bucket,
            self.bucket_dir.display()
        )
    }

    async fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        meta: ChunkMeta,
    ) -> Result<PutOutcome, StoreError> {
        let this = Arc::clone(self);
        run_blocking(key, move |key| this.put_blocking(key, &body, meta)).await
    }

    async fn head(&self, key: &str) -> Result<Option<ChunkMeta>, StoreError> {
        let this = Arc::clone(self);
        run_blocking(key, move |key| this.head_blocking(key)).await
    }
}

/// Runs file-system work for `key` on tokio's blocking pool.
async fn run_blocking<T: Send + 'static>(
    key: &str,
    work: impl FnOnce(&str) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let owned = key.to_string();
    tokio::task::spawn_blocking(move || work(&owned))
        .await
        .map_err(|e| StoreError::Transient {
            key: key.to_string(),
            message: e.to_string(),
        })?
}

/// Settings of an S3-compatible destination.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub path_style: bool,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// ID of the instance whose records the store writes.
    pub source_id: String,
}

/// An S3-compatible bucket through `object_store`, with `If-None-Match: *` puts
/// and the offsets as `x-amz-meta-weir-*` user metadata.
pub struct S3Store {
    inner: AmazonS3,
    endpoint: String,
    bucket: String,
    /// Redacted from error messages, because S3 error bodies echo it.
    access_key: Option<String>,
    source_id: String,
}

impl S3Store {
    /// Builds the client. Credentials come only from the task: the builder never
    /// reads the environment or an instance metadata service.
    pub fn new(settings: &S3Settings) -> Result<Self, StoreError> {
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(&settings.endpoint)
            .with_region(&settings.region)
            .with_bucket_name(&settings.bucket)
            .with_virtual_hosted_style_request(!settings.path_style)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_client_options(
                // Set on the options, which replace the builder's earlier client settings.
                ClientOptions::new()
                    .with_allow_http(true)
                    .with_timeout(Duration::from_secs(30))
                    .with_connect_timeout(Duration::from_secs(5)),
            )
            // A short inner retry: the runner retries with its own backoff and
            // reports a failing store in the task status meanwhile.
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(15),
                ..RetryConfig::default()
            });
        match (&settings.access_key, &settings.secret_key) {
            (Some(ak), Some(sk)) if !ak.is_empty() => {
                builder = builder.with_access_key_id(ak).with_secret_access_key(sk);
            }
            _ => builder = builder.with_skip_signature(true),
        }
        let inner = builder.build().map_err(|e| StoreError::Permanent {
            key: String::new(),
            message: format!("invalid S3 settings for bucket {}: {e}", settings.bucket),
        })?;
        Ok(Self {
            inner,
            endpoint: settings.endpoint.clone(),
            bucket: settings.bucket.clone(),
            access_key: settings.access_key.clone().filter(|k| !k.is_empty()),
            source_id: settings.source_id.clone(),
        })
    }
}

fn classify(key: &str, error: object_store::Error, access_key: Option<&str>) -> StoreError {
    use object_store::Error as E;
    let mut message = error.to_string();
    if let Some(access_key) = access_key {
        message = message.replace(access_key, "<redacted>");
    }
    match error {
        E::PermissionDenied { .. } | E::Unauthenticated { .. } | E::NotSupported { .. } => {
            StoreError::Permanent {
                key: key.to_string(),
                message,
            }
        }
        _ if message.contains("NoSuchBucket") => StoreError::Permanent {
            key: key.to_string(),
            message,
        },
        _ => StoreError::Transient {
            key: key.to_string(),
            message,
        },
    }
}

#[async_trait]
impl ChunkStore for S3Store {
    fn describe(&self) -> String {
        format!("s3 bucket {} at {}", self.bucket, self.endpoint)
    }

    async fn put_if_absent(
        &self,
        key: &str,
        body: Bytes,
        meta: ChunkMeta,
    ) -> Result<PutOutcome, StoreError> {
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, AttributeValue::from("text/plain"));
        for (name, value) in meta.pairs() {
            attributes.insert(
                Attribute::Metadata(name.into()),
                AttributeValue::from(value),
            );
        }
        if !self.source_id.is_empty() {
            attributes.insert(
                Attribute::Metadata(META_SOURCE.into()),
                AttributeValue::from(self.source_id.clone()),
            );
        }
        let options = PutOptions {
            mode: PutMode::Create,
            attributes,
            ..PutOptions::default()
        };
        let path = ObjectPath::from(key);
        match self
            .inner
            .put_opts(&path, PutPayload::from_bytes(body), options)
            .await
        {
            Ok(_) => Ok(PutOutcome::Created),
            Err(object_store::Error::AlreadyExists { .. }) => match self.head(key).await? {
                Some(existing) => Ok(PutOutcome::Exists(existing)),
                None => Err(StoreError::Transient {
                    key: key.to_string(),
                    message: "the object existed at put time but not at the following read"
                        .to_string(),
                }),
            },
            Err(e) => Err(classify(key, e, self.access_key.as_deref())),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ChunkMeta>, StoreError> {
        let path = ObjectPath::from(key);
        let options = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.inner.get_opts(&path, options).await {
            Ok(result) => {
                let lookup = |name: &str| {
                    result
                        .attributes
                        .get(&Attribute::Metadata(name.to_string().into()))
                        .map(|v| v.to_string())
                };
                let meta =
                    ChunkMeta::from_lookup(lookup).ok_or_else(|| StoreError::ForeignObject {
                        key: key.to_string(),
                    })?;
                check_source(key, &self.source_id, lookup(META_SOURCE))?;
                Ok(Some(meta))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(classify(key, e, self.access_key.as_deref())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(first: i64, last: i64) -> ChunkMeta {
        ChunkMeta {
            first_offset: first,
            last_offset: last,
            record_count: u64::try_from(last - first + 1).expect("positive"),
        }
    }

    #[tokio::test]
    async fn local_put_is_create_if_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(LocalStore::new(dir.path(), "bucket", "instance-1"));
        let key = "p/t/2024/t+0+00000000000000000000.txt";
        let first = store
            .put_if_absent(key, Bytes::from_static(b"a\nb\n"), meta(0, 1))
            .await
            .expect("first put");
        assert_eq!(first, PutOutcome::Created);
        let second = store
            .put_if_absent(key, Bytes::from_static(b"a\nb\nc\n"), meta(0, 2))
            .await
            .expect("second put");
        assert_eq!(second, PutOutcome::Exists(meta(0, 1)));
        let content = std::fs::read(dir.path().join("bucket").join(key)).expect("read object");
        assert_eq!(content, b"a\nb\n");
    }

    #[tokio::test]
    async fn local_chunk_of_other_instance_is_not_adopted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Arc::new(LocalStore::new(dir.path(), "bucket", "instance-1"));
        let second = Arc::new(LocalStore::new(dir.path(), "bucket", "instance-2"));
        let key = "p/t/2024/t+0+00000000000000000000.txt";
        first
            .put_if_absent(key, Bytes::from_static(b"a\n"), meta(0, 0))
            .await
            .expect("first put");

        let put = second
            .put_if_absent(key, Bytes::from_static(b"b\n"), meta(0, 0))
            .await;
        let head = second.head(key).await;
        let own_head = first.head(key).await.expect("head of own object");

        assert!(
            matches!(&put, Err(StoreError::OtherInstance { instance_id, .. }) if instance_id == "instance-1"),
            "{put:?}"
        );
        assert!(
            matches!(head, Err(StoreError::OtherInstance { .. })),
            "{head:?}"
        );
        assert_eq!(own_head, Some(meta(0, 0)));
    }

    #[tokio::test]
    async fn local_head_reports_offsets_and_absence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(LocalStore::new(dir.path(), "b", "instance-1"));
        assert_eq!(store.head("t/x+0+1.txt").await.expect("head"), None);
        store
            .put_if_absent("t/x+0+1.txt", Bytes::from_static(b"v"), meta(1, 9))
            .await
            .expect("put");
        assert_eq!(
            store.head("t/x+0+1.txt").await.expect("head"),
            Some(meta(1, 9))
        );
        assert!(
            !dir.path()
                .join(".weir-tmp")
                .read_dir()
                .expect("tmp dir")
                .any(|_| true)
        );
    }

    #[tokio::test]
    async fn local_foreign_object_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("b/t")).expect("mkdir");
        std::fs::write(dir.path().join("b/t/f.txt"), b"x").expect("write");
        let store = Arc::new(LocalStore::new(dir.path(), "b", "instance-1"));
        let err = store
            .put_if_absent("t/f.txt", Bytes::from_static(b"y"), meta(0, 0))
            .await
            .expect_err("foreign object");
        assert!(matches!(err, StoreError::ForeignObject { .. }), "{err}");
    }
}

//! Where recordings are stored, from the configuration
//! (`PARLEY_RECORDING_STORE`: a local folder, or S3 with the `s3` feature).

use std::sync::Arc;

use object_store::ObjectStore;

use crate::config::{Config, RecordingStore};
use crate::store::files::{FilesError, RecordingFiles};

impl RecordingFiles {
    /// The store `config` names (a local directory is created if missing),
    /// with its link secret (generated in the data dir in dev if unset).
    pub fn from_config(config: &Config) -> Result<RecordingFiles, FilesError> {
        let rec = &config.recordings;
        let secret = config
            .resolve_recording_url_secret()
            .map_err(|e| FilesError::Config(format!("PARLEY_RECORDING_URL_SECRET: {e}: {}", e.source)))?;
        let store: Arc<dyn ObjectStore> = match &rec.store {
            RecordingStore::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    FilesError::Config(format!("PARLEY_RECORDING_STORE: cannot create {}: {e}", dir.display()))
                })?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| FilesError::Config(format!("PARLEY_RECORDING_STORE: {e}")))?;
                Arc::new(fs.with_automatic_cleanup(true))
            }
            RecordingStore::S3 { bucket, prefix } => s3_store(bucket, prefix)?,
        };
        RecordingFiles::new(store, &secret, rec.url_ttl)
    }
}

#[cfg(feature = "s3")]
fn s3_store(bucket: &str, prefix: &str) -> Result<Arc<dyn ObjectStore>, FilesError> {
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| FilesError::Config(format!("PARLEY_RECORDING_STORE: {e}")))?;
    if prefix.is_empty() { Ok(Arc::new(s3)) } else { Ok(Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))) }
}

#[cfg(not(feature = "s3"))]
fn s3_store(_bucket: &str, _prefix: &str) -> Result<Arc<dyn ObjectStore>, FilesError> {
    Err(FilesError::Config("PARLEY_RECORDING_STORE: s3:// needs a server built with the `s3` cargo feature".into()))
}

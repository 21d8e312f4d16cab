//! Where a distributed back-fill keeps its files in S3: the plan of a run (its manifest, the items the
//! Distributed Map reads) and the partials the scanners write, under `PREFIX/RUN/`. The template expires
//! the prefix by a lifecycle rule; the CLI deletes a run's files when it has merged them.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use tokenwatch_core::partial::Partial;
use tokenwatch_core::ports::PortError;

use crate::error::from_sdk;
use crate::trail::list_keys;

/// The user metadata (`x-amz-meta-attempt`) that says which attempt of its item wrote a partial.
const ATTEMPT: &str = "attempt";

/// A bucket and prefix for runs' files.
#[derive(Clone, Debug)]
pub struct PartialStore {
    client: Client,
    /// The bucket.
    pub bucket: String,
    /// The prefix, ending in `/` (or empty).
    pub prefix: String,
}

impl PartialStore {
    /// The store under `prefix` of `bucket` (a `/` is added to a prefix without one).
    pub fn new(client: Client, bucket: impl Into<String>, prefix: &str) -> PartialStore {
        let prefix = prefix.trim_start_matches('/');
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        PartialStore {
            client,
            bucket: bucket.into(),
            prefix,
        }
    }

    /// The key of `name` in run `run`.
    pub fn key(&self, run: &str, name: &str) -> String {
        format!("{}{run}/{name}", self.prefix)
    }

    /// Writes `body` as `name` of run `run`; returns its key.
    pub async fn put(&self, run: &str, name: &str, body: Vec<u8>) -> Result<String, PortError> {
        self.put_object(run, name, body, None).await
    }

    /// Writes the partial `body` as `name` of run `run`, written by the item's attempt `attempt` (0 for
    /// the first); returns its key. [`PartialStore::partial_of_attempt`] reads both back.
    pub async fn put_attempt(
        &self,
        run: &str,
        name: &str,
        body: Vec<u8>,
        attempt: u32,
    ) -> Result<String, PortError> {
        self.put_object(run, name, body, Some(attempt)).await
    }

    async fn put_object(
        &self,
        run: &str,
        name: &str,
        body: Vec<u8>,
        attempt: Option<u32>,
    ) -> Result<String, PortError> {
        let key = self.key(run, name);
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        if let Some(attempt) = attempt {
            put = put.metadata(ATTEMPT, attempt.to_string());
        }
        put.send().await.map_err(|e| from_sdk("s3:PutObject", e))?;
        Ok(key)
    }

    /// The body of `key` in the bucket.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, PortError> {
        Ok(self.get_object(key).await?.0)
    }

    /// The body of `key` and the attempt that wrote it (0 when it does not say).
    async fn get_object(&self, key: &str) -> Result<(Vec<u8>, u32), PortError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| from_sdk("s3:GetObject", e))?;
        let attempt = out
            .metadata()
            .and_then(|m| m.get(ATTEMPT))
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| PortError::transient(format!("s3:GetObject {key}: reading the body: {e}")))?;
        Ok((body.into_bytes().to_vec(), attempt))
    }

    /// The partial at `key`.
    pub async fn partial(&self, key: &str) -> Result<Partial, PortError> {
        Ok(self.partial_of_attempt(key).await?.0)
    }

    /// The partial at `key` and the attempt of its item that wrote it (0: the first, or not said).
    pub async fn partial_of_attempt(&self, key: &str) -> Result<(Partial, u32), PortError> {
        let (body, attempt) = self.get_object(key).await?;
        let partial = Partial::from_json(&body).map_err(|e| PortError::permanent(format!("{key}: {e}")))?;
        Ok((partial, attempt))
    }

    /// The keys of every file of run `run`.
    pub async fn keys(&self, run: &str) -> Result<Vec<String>, PortError> {
        list_keys(&self.client, &self.bucket, &self.key(run, "")).await
    }

    /// Deletes every file of run `run`; returns how many.
    pub async fn delete_run(&self, run: &str) -> Result<usize, PortError> {
        let keys = self.keys(run).await?;
        self.delete(&keys).await
    }

    /// Deletes `keys` (a run's files, as [`PartialStore::keys`] listed them); returns how many.
    pub async fn delete(&self, keys: &[String]) -> Result<usize, PortError> {
        for key in keys {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| from_sdk("s3:DeleteObject", e))?;
        }
        Ok(keys.len())
    }
}

//! Back-fill from a trail's log files in S3: [`TrailReader`] lists the objects a trail delivered in a
//! time window and streams each one through the engine.
//!
//! A trail writes `PREFIX/AWSLogs/ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/ACCOUNT_CloudTrail_REGION_…json.gz`,
//! an organization trail `PREFIX/AWSLogs/O-ID/ACCOUNT/CloudTrail/…` (docs/cloudtrail.md, "Trail log files"). The walk lists
//! accounts and regions with a delimiter, then only the day folders of the window, so it never enters
//! `CloudTrail-Digest/` or `CloudTrail-Insight/` and never lists days it does not read.
//!
//! Each object is downloaded as a stream (at most [`TrailReader::downloads`] at once), its chunks pass
//! through a small bounded channel to a blocking thread that decompresses them and feeds a fork of the
//! [`Analyzer`]; the forks are merged as objects finish. The async runtime only moves bytes; inflating and
//! scanning run on as many threads as there are downloads, so every core is busy. Memory is bounded by the
//! number of downloads (one 1 MiB read buffer, the inflate state and a few chunks each) plus the engine's
//! session index, whatever the size of the trail; keys are listed just ahead of the downloads, not
//! collected first.
//!
//! An object that cannot be read is named with its key and the reason in [`TrailSummary::errors`], with
//! the records before the fault kept; the other objects are read in full. Each error says whether another
//! attempt can succeed ([`ObjectErrorKind`]): throttling, a 5xx, a timeout or a dropped connection may
//! not happen again; access denied, an archived object, a truncated gzip or not a CloudTrail log file will.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes as Chunk;
use tokenwatch_core::Analyzer;
use tokenwatch_core::livescan::LiveWindow;
use tokenwatch_core::reader::{ReadError, decompressing};
use tokenwatch_core::time::{Epoch, format_time};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::error::{Blocked, blocked, from_sdk};
use tokenwatch_core::ports::PortError;

/// Objects downloaded at once by default.
pub const DEFAULT_DOWNLOADS: usize = 8;
/// Body chunks buffered between one download and its decompressing thread.
const CHUNKS_IN_FLIGHT: usize = 8;
/// Keys listed ahead of the downloads.
const LISTED_AHEAD: usize = 1_000;
/// Windows up to this many days are listed day by day; longer ones month by month.
const MAX_DAY_FOLDERS: i64 = 93;
const DAY: Epoch = 86_400;

/// Where a trail delivers: `s3://bucket/prefix`, the prefix being the part before `AWSLogs/` (empty when
/// the trail writes at the top of the bucket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrailLocation {
    /// The bucket.
    pub bucket: String,
    /// The trail's key prefix, without a trailing `/`; empty for none.
    pub prefix: String,
}

impl TrailLocation {
    /// `PREFIX/AWSLogs/`.
    fn logs_root(&self) -> String {
        if self.prefix.is_empty() {
            "AWSLogs/".to_owned()
        } else {
            format!("{}/AWSLogs/", self.prefix)
        }
    }

    /// `s3://bucket/key`, how an object is named in messages.
    pub fn url_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

impl fmt::Display for TrailLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

impl FromStr for TrailLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| format!("'{s}' is not an s3:// URL (expected s3://bucket/prefix)"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("'{s}' names no bucket (expected s3://bucket/prefix)"));
        }
        let mut prefix = prefix.trim_matches('/');
        // Forgive a URL that goes on into the AWSLogs/ tree: the walk starts there itself.
        if let Some(i) = prefix.find("AWSLogs") {
            let at_segment = i == 0 || prefix.as_bytes()[i - 1] == b'/';
            let ends_segment = prefix[i + 7..].is_empty() || prefix[i + 7..].starts_with('/');
            if at_segment && ends_segment {
                prefix = prefix[..i].trim_end_matches('/');
            }
        }
        Ok(TrailLocation {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}

/// Which of the trail's objects to read.
#[derive(Clone, Debug, Default)]
pub struct TrailFilter {
    /// Failures from this time on are counted (the walk starts a day earlier, see [`TrailFilter::folders`]).
    pub since: Option<Epoch>,
    /// Failures up to this time are counted (the walk ends a day later); `None` is up to now.
    pub until: Option<Epoch>,
    /// Only these accounts (empty: all).
    pub accounts: Vec<String>,
    /// Only these regions (empty: all).
    pub regions: Vec<String>,
}

impl TrailFilter {
    /// The date folders (`YYYY/MM/DD/`, or `YYYY/MM/` for windows over three months) to list under a
    /// region, or `None` for all of them. The walk starts one day before `since`, so that sessions issued
    /// before the window still have their issuing call, and ends one day after `until` (or `now`), since a
    /// file is filed under its delivery time and may hold records written before it.
    pub fn folders(&self, now: Epoch) -> Option<Vec<String>> {
        let first = self.since? - DAY;
        let last = self.until.unwrap_or(now).max(first) + DAY;
        let date = |t: Epoch| format_time(t)[..10].replace('-', "/");
        if (last - first) / DAY <= MAX_DAY_FOLDERS {
            let mut days: Vec<String> = (0..=(last - first) / DAY)
                .map(|i| date(first + i * DAY) + "/")
                .collect();
            // `first + n days` can step over `last`'s date only when `last` is not at the same time of day.
            let last_day = date(last) + "/";
            if days.last() != Some(&last_day) {
                days.push(last_day);
            }
            Some(days)
        } else {
            let mut months: Vec<String> = Vec::new();
            let mut t = first;
            while t <= last + DAY {
                let month = date(t)[..7].to_owned() + "/";
                if months.last() != Some(&month) {
                    months.push(month);
                }
                t += DAY;
            }
            Some(months)
        }
    }

    fn wants_account(&self, account: &str) -> bool {
        self.accounts.is_empty() || self.accounts.iter().any(|a| a == account)
    }

    fn wants_region(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.iter().any(|r| r == region)
    }
}

/// What the back-fill is told as it goes (for a progress bar). Both methods may be called from any thread.
pub trait TrailProgress: Send + Sync {
    /// An object of `size` bytes was listed and will be read.
    fn listed(&self, _size: u64) {}
    /// `bytes` more of an object's (compressed) body arrived.
    fn downloaded(&self, _bytes: u64) {}
}

/// A [`TrailProgress`] that shows nothing.
pub struct NoProgress;

impl TrailProgress for NoProgress {}

/// Whether reading an object (or listing a folder) again can succeed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ObjectErrorKind {
    /// It will fail again: access denied, no such key, an archived object, a truncated or corrupt gzip,
    /// not a CloudTrail log file, a reading thread that panicked.
    #[default]
    Permanent,
    /// Another attempt may succeed: throttling (`SlowDown`), a 5xx, a timeout, a connection that failed
    /// before or during the body.
    Transient,
}

/// An object (or a folder listing) that could not be read in full.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectError {
    /// `s3://bucket/key` of the object, or of the folder whose listing failed.
    pub name: String,
    /// Why, in words.
    pub reason: String,
    /// Whether a retry can help: a back-fill's scanner fails its item (and the map retries it) for a
    /// transient fault, and names a permanent one in its partial.
    pub kind: ObjectErrorKind,
}

impl ObjectError {
    /// A fault that will happen again.
    pub fn permanent(name: impl Into<String>, reason: impl Into<String>) -> ObjectError {
        ObjectError {
            name: name.into(),
            reason: reason.into(),
            kind: ObjectErrorKind::Permanent,
        }
    }

    /// A fault another attempt may not meet.
    pub fn transient(name: impl Into<String>, reason: impl Into<String>) -> ObjectError {
        ObjectError {
            name: name.into(),
            reason: reason.into(),
            kind: ObjectErrorKind::Transient,
        }
    }

    /// A failed S3 call on `name`, transient when the call's error is.
    pub fn of_port(name: impl Into<String>, e: &PortError) -> ObjectError {
        if e.is_transient() {
            ObjectError::transient(name, e.to_string())
        } else {
            ObjectError::permanent(name, e.to_string())
        }
    }

    /// Can a retry succeed?
    pub fn is_transient(&self) -> bool {
        self.kind == ObjectErrorKind::Transient
    }
}

/// What a back-fill read.
#[derive(Clone, Debug, Default)]
pub struct TrailSummary {
    /// Objects listed in the window (read in full or not).
    pub objects: u64,
    /// Compressed bytes downloaded.
    pub bytes: u64,
    /// What could not be read, sorted by name.
    pub errors: Vec<ObjectError>,
}

/// A back-fill that could not start.
#[derive(Debug)]
pub enum TrailError {
    /// Listing the trail's `AWSLogs/` folder failed (no such bucket, no permission, no network).
    List {
        /// The trail.
        location: String,
        /// The SDK's error, mapped.
        reason: String,
        /// Set when only the user can fix it (credentials, region, permission).
        blocked: Option<Blocked>,
    },
    /// The bucket and prefix hold no `AWSLogs/ACCOUNT/` folder.
    NoTrail {
        /// The trail.
        location: String,
    },
    /// The trail has account folders, but none the filter selects.
    NoAccount {
        /// The trail.
        location: String,
        /// The accounts it has.
        found: Vec<String>,
    },
}

impl fmt::Display for TrailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrailError::List {
                location,
                blocked: Some(b),
                ..
            } => write!(f, "listing {location}/AWSLogs/: {b}"),
            TrailError::List { location, reason, .. } => write!(f, "listing {location}/AWSLogs/: {reason}"),
            TrailError::NoTrail { location } => write!(
                f,
                "no AWSLogs/<account>/ folder under {location} (give the bucket and the prefix the trail \
                 writes under, the part before AWSLogs/)"
            ),
            TrailError::NoAccount { location, found } => write!(
                f,
                "{location} has no folder of the accounts asked for (it has {})",
                found.join(", ")
            ),
        }
    }
}

impl std::error::Error for TrailError {}

/// The S3 client the reader and the partial store take.
pub type S3Client = Client;

/// An S3 client of `sdk`. Addressing is path-style when an endpoint is overridden: emulators and
/// S3-compatible stores do not resolve bucket subdomains.
pub fn s3_client(sdk: &SdkConfig) -> Client {
    let overridden = sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(overridden)
        .build();
    Client::from_conf(config)
}

/// Reads a trail's log files from S3 into an [`Analyzer`].
pub struct TrailReader {
    client: Client,
    location: TrailLocation,
    downloads: usize,
}

impl TrailReader {
    /// A reader of the trail at `location`, with a client built from `sdk` ([`crate::sdk_config`]).
    /// Addressing is path-style when an endpoint is overridden (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`,
    /// [`crate::SdkOptions::endpoint_url`]): emulators and S3-compatible stores do not resolve bucket
    /// subdomains.
    pub fn new(sdk: &SdkConfig, location: TrailLocation) -> Self {
        Self::from_client(s3_client(sdk), location)
    }

    /// A reader of the trail at `location` through `client`.
    pub fn from_client(client: Client, location: TrailLocation) -> Self {
        TrailReader {
            client,
            location,
            downloads: DEFAULT_DOWNLOADS,
        }
    }

    /// Objects downloaded (and decompressed) at once; at least 1.
    pub fn downloads(mut self, n: usize) -> Self {
        self.downloads = n.max(1);
        self
    }

    /// The trail read.
    pub fn location(&self) -> &TrailLocation {
        &self.location
    }

    /// Reads every log file of the trail that `filter` selects into `analyzer` (through forks, merged
    /// back). Fails only when the trail cannot be listed at all; objects and folders that cannot be read
    /// are in the summary's `errors`. `now` bounds a window without `until`.
    pub async fn read_into(
        &self,
        analyzer: &mut Analyzer,
        filter: &TrailFilter,
        now: Epoch,
        progress: Arc<dyn TrailProgress>,
    ) -> Result<TrailSummary, TrailError> {
        let mut summary = TrailSummary::default();
        let accounts = self.account_roots(filter, &mut summary.errors).await?;

        let (tx, mut listed) = mpsc::channel(LISTED_AHEAD);
        let walker = Walker {
            client: self.client.clone(),
            location: self.location.clone(),
            filter: filter.clone(),
            folders: filter.folders(now),
            progress: Arc::clone(&progress),
            tx,
        };
        let walking = tokio::spawn(walker.walk(accounts));

        let mut running = JoinSet::new();
        let mut listing = true;
        while listing || !running.is_empty() {
            tokio::select! {
                item = listed.recv(), if listing && running.len() < self.downloads => match item {
                    Some(Listed::Object(key)) => {
                        summary.objects += 1;
                        running.spawn(read_object(
                            self.client.clone(),
                            self.location.clone(),
                            key,
                            analyzer.fork(),
                            Arc::clone(&progress),
                        ));
                    }
                    Some(Listed::Failed(e)) => summary.errors.push(e),
                    None => listing = false,
                },
                Some(done) = running.join_next(), if !running.is_empty() => match done {
                    Ok(done) => {
                        summary.bytes += done.bytes;
                        if let Some(worker) = done.analyzer {
                            analyzer.merge(worker);
                        }
                        if let Err(e) = done.result {
                            summary.errors.push(e);
                        }
                    }
                    // read_object catches its thread's panics; this is the task itself panicking.
                    Err(e) => summary.errors.push(ObjectError::permanent(
                        self.location.to_string(),
                        format!("a download task failed: {e}"),
                    )),
                },
            }
        }
        if let Err(e) = walking.await {
            summary.errors.push(ObjectError::permanent(
                self.location.to_string(),
                format!("listing stopped: {e}"),
            ));
        }
        summary.errors.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(summary)
    }

    /// Reads the objects `keys` of the trail's bucket into `analyzer`, as [`TrailReader::read_into`]
    /// reads the objects it lists: what a scanner given a batch of keys does. Objects that cannot be
    /// read are in the summary's `errors`.
    pub async fn read_keys_into(
        &self,
        analyzer: &mut Analyzer,
        keys: Vec<String>,
        progress: Arc<dyn TrailProgress>,
    ) -> TrailSummary {
        let mut summary = TrailSummary::default();
        let mut keys = keys.into_iter();
        let mut running = JoinSet::new();
        loop {
            while running.len() < self.downloads {
                let Some(key) = keys.next() else { break };
                summary.objects += 1;
                running.spawn(read_object(
                    self.client.clone(),
                    self.location.clone(),
                    key,
                    analyzer.fork(),
                    Arc::clone(&progress),
                ));
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            match done {
                Ok(done) => {
                    summary.bytes += done.bytes;
                    if let Some(worker) = done.analyzer {
                        analyzer.merge(worker);
                    }
                    if let Err(e) = done.result {
                        summary.errors.push(e);
                    }
                }
                Err(e) => summary.errors.push(ObjectError::permanent(
                    self.location.to_string(),
                    format!("a download task failed: {e}"),
                )),
            }
        }
        summary.errors.sort_by(|a, b| a.name.cmp(&b.name));
        summary
    }

    /// The keys of the log files under `prefix` (a day, account or region folder of the trail), digest
    /// and insight files left out; listed in full, then sorted.
    pub async fn keys_under(&self, prefix: &str) -> Result<Vec<String>, PortError> {
        let mut keys = list_keys(&self.client, &self.location.bucket, prefix).await?;
        keys.retain(|k| !k.ends_with('/') && is_log_key(k));
        keys.sort();
        Ok(keys)
    }

    /// The day folders of the window under every account and region the filter selects, each with its
    /// objects' keys and sizes: the plan of a distributed back-fill, the same objects
    /// [`TrailReader::read_into`] would read. Folders whose listing failed are in `errors`.
    pub async fn plan(
        &self,
        filter: &TrailFilter,
        now: Epoch,
        errors: &mut Vec<ObjectError>,
    ) -> Result<Vec<(String, u64)>, TrailError> {
        let accounts = self.account_roots(filter, errors).await?;
        let (tx, mut listed) = mpsc::channel(LISTED_AHEAD);
        let sizes = Arc::new(SizeLog::default());
        let walker = Walker {
            client: self.client.clone(),
            location: self.location.clone(),
            filter: filter.clone(),
            folders: filter.folders(now),
            progress: Arc::clone(&sizes) as Arc<dyn TrailProgress>,
            tx,
        };
        let walking = tokio::spawn(walker.walk(accounts));
        let mut keys = Vec::new();
        while let Some(item) = listed.recv().await {
            match item {
                Listed::Object(key) => keys.push(key),
                Listed::Failed(e) => errors.push(e),
            }
        }
        if let Err(e) = walking.await {
            errors.push(ObjectError::permanent(
                self.location.to_string(),
                format!("listing stopped: {e}"),
            ));
        }
        let sizes = std::mem::take(&mut *sizes.0.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(keys.into_iter().zip(sizes).collect())
    }

    /// `…/AWSLogs/[O-ID/]ACCOUNT/CloudTrail/` of every account the filter wants.
    async fn account_roots(
        &self,
        filter: &TrailFilter,
        errors: &mut Vec<ObjectError>,
    ) -> Result<Vec<String>, TrailError> {
        let root = self.location.logs_root();
        let top = list_folders(&self.client, &self.location.bucket, &root)
            .await
            .map_err(|e| TrailError::List {
                location: self.location.to_string(),
                blocked: blocked(&e).cloned(),
                reason: e.to_string(),
            })?;
        let mut accounts = Vec::new();
        for folder in top {
            let name = last_segment(&folder);
            if is_account(name) {
                accounts.push(folder);
            } else if name.starts_with("o-") {
                match list_folders(&self.client, &self.location.bucket, &folder).await {
                    Ok(inner) => accounts.extend(inner.into_iter().filter(|f| is_account(last_segment(f)))),
                    Err(e) => errors.push(ObjectError::of_port(self.location.url_of(&folder), &e)),
                }
            }
        }
        if accounts.is_empty() {
            return Err(TrailError::NoTrail {
                location: self.location.to_string(),
            });
        }
        let mut found: Vec<String> = accounts.iter().map(|f| last_segment(f).to_owned()).collect();
        found.sort();
        found.dedup();
        let wanted: Vec<String> = accounts
            .into_iter()
            .filter(|f| filter.wants_account(last_segment(f)))
            .map(|f| f + "CloudTrail/")
            .collect();
        if wanted.is_empty() {
            return Err(TrailError::NoAccount {
                location: self.location.to_string(),
                found,
            });
        }
        Ok(wanted)
    }

    /// The keys of the log files a scheduled scan reads: those of every account and region of the trail
    /// delivered within `window`, told by the delivery time in their names (older files are never
    /// downloaded), from the day folders the window touches only. A region or day whose listing failed is
    /// in `errors`; the others are listed in full. Sorted.
    pub async fn recent_keys(
        &self,
        window: &LiveWindow,
        errors: &mut Vec<ObjectError>,
    ) -> Result<Vec<String>, TrailError> {
        let accounts = self.account_roots(&TrailFilter::default(), errors).await?;
        let days = window.days();
        let mut keys = Vec::new();
        for account in accounts {
            let regions = match list_folders(&self.client, &self.location.bucket, &account).await {
                Ok(regions) => regions,
                Err(e) => {
                    errors.push(ObjectError::of_port(self.location.url_of(&account), &e));
                    continue;
                }
            };
            for region in regions {
                for day in &days {
                    let folder = format!("{region}{day}");
                    match self.keys_under(&folder).await {
                        Ok(found) => keys.extend(found.into_iter().filter(|k| window.reads(k))),
                        Err(e) => errors.push(ObjectError::of_port(self.location.url_of(&folder), &e)),
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

enum Listed {
    Object(String),
    Failed(ObjectError),
}

/// Lists regions and date folders and sends the keys found, as the downloads take them.
struct Walker {
    client: Client,
    location: TrailLocation,
    filter: TrailFilter,
    folders: Option<Vec<String>>,
    progress: Arc<dyn TrailProgress>,
    tx: mpsc::Sender<Listed>,
}

impl Walker {
    async fn walk(self, accounts: Vec<String>) {
        for account in accounts {
            let regions = match list_folders(&self.client, &self.location.bucket, &account).await {
                Ok(regions) => regions,
                Err(e) => {
                    if !self.fail(&account, &e).await {
                        return;
                    }
                    continue;
                }
            };
            for region in regions {
                if !self.filter.wants_region(last_segment(&region)) {
                    continue;
                }
                let prefixes = match &self.folders {
                    Some(folders) => folders.iter().map(|f| format!("{region}{f}")).collect(),
                    None => vec![region.clone()],
                };
                for prefix in prefixes {
                    if !self.objects(&prefix).await {
                        return;
                    }
                }
            }
        }
    }

    /// Sends every object under `prefix`; false when the receiver is gone.
    async fn objects(&self, prefix: &str) -> bool {
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.location.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await;
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    return self.fail(prefix, &from_sdk("s3:ListObjectsV2", e)).await;
                }
            };
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if key.ends_with('/') {
                    continue;
                }
                self.progress
                    .listed(object.size().unwrap_or_default().max(0) as u64);
                if self.tx.send(Listed::Object(key.to_owned())).await.is_err() {
                    return false;
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return true,
            }
        }
    }

    async fn fail(&self, prefix: &str, e: &PortError) -> bool {
        let failed = ObjectError::of_port(self.location.url_of(prefix), e);
        self.tx.send(Listed::Failed(failed)).await.is_ok()
    }
}

/// The keys of every object under `prefix`, every page of the listing, in the order S3 lists them.
pub(crate) async fn list_keys(client: &Client, bucket: &str, prefix: &str) -> Result<Vec<String>, PortError> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| from_sdk("s3:ListObjectsV2", e))?;
        keys.extend(page.contents().iter().filter_map(|o| o.key()).map(str::to_owned));
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => return Ok(keys),
        }
    }
}

/// The sub-folders (common prefixes, ending in `/`) directly under `prefix`.
async fn list_folders(client: &Client, bucket: &str, prefix: &str) -> Result<Vec<String>, PortError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .delimiter("/")
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| from_sdk("s3:ListObjectsV2", e))?;
        out.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_owned)),
        );
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// The sizes of listed objects, in the order they were listed (the walker sends keys in that order).
#[derive(Default)]
struct SizeLog(std::sync::Mutex<Vec<u64>>);

impl TrailProgress for SizeLog {
    fn listed(&self, size: u64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(size);
    }
}

/// A trail's log file rather than a digest or insight file: those live in folders of their own
/// (`CloudTrail-Digest/`, `CloudTrail-Insight/`), which a prefix of a whole account may cover.
fn is_log_key(key: &str) -> bool {
    key.contains("/CloudTrail/")
}

/// `b` of `a/b/`.
fn last_segment(folder: &str) -> &str {
    folder
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

fn is_account(name: &str) -> bool {
    name.len() == 12 && name.bytes().all(|b| b.is_ascii_digit())
}

/// How one object went.
struct ObjectDone {
    /// The fork that read it, with whatever it read before a fault; `None` if its thread panicked.
    analyzer: Option<Analyzer>,
    bytes: u64,
    result: Result<(), ObjectError>,
}

async fn read_object(
    client: Client,
    location: TrailLocation,
    key: String,
    worker: Analyzer,
    progress: Arc<dyn TrailProgress>,
) -> ObjectDone {
    let name = location.url_of(&key);
    let response = client
        .get_object()
        .bucket(&location.bucket)
        .key(&key)
        .send()
        .await;
    let body = match response {
        Ok(response) => response.body,
        Err(e) => {
            return ObjectDone {
                analyzer: Some(worker),
                bytes: 0,
                result: Err(ObjectError::of_port(name, &from_sdk("s3:GetObject", e))),
            };
        }
    };
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let reading = tokio::task::spawn_blocking(move || {
        let mut worker = worker;
        let result = read_log_file(&mut worker, ChannelReader::new(rx));
        (worker, result)
    });
    let (bytes, cut) = pump(body, tx, progress.as_ref()).await;
    match reading.await {
        // The reader's error says what it met; the download's failure says whether a retry can help.
        Ok((worker, result)) => ObjectDone {
            analyzer: Some(worker),
            bytes,
            result: result.map_err(|reason| match cut {
                Cut::Failed => ObjectError::transient(name, reason),
                Cut::Whole => ObjectError::permanent(name, reason),
            }),
        },
        Err(e) => ObjectDone {
            analyzer: None,
            bytes,
            result: Err(ObjectError::permanent(name, format!("reading stopped: {e}"))),
        },
    }
}

/// How a body's download ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// It arrived whole, or the reader stopped taking it.
    Whole,
    /// The connection failed before its end (a timeout, a reset): another attempt may get it.
    Failed,
}

/// Moves the body's chunks to the reading thread until the body ends, fails, or the reader stops
/// (after a fault: dropping the body then closes the connection). Returns the bytes moved and whether the
/// download failed.
async fn pump(
    mut body: ByteStream,
    tx: mpsc::Sender<io::Result<Chunk>>,
    progress: &dyn TrailProgress,
) -> (u64, Cut) {
    let mut moved = 0;
    loop {
        match body.next().await {
            Some(Ok(chunk)) => {
                moved += chunk.len() as u64;
                progress.downloaded(chunk.len() as u64);
                if tx.send(Ok(chunk)).await.is_err() {
                    return (moved, Cut::Whole);
                }
            }
            Some(Err(e)) => {
                let _ = tx
                    .send(Err(io::Error::other(format!("download failed: {e}"))))
                    .await;
                return (moved, Cut::Failed);
            }
            None => return (moved, Cut::Whole),
        }
    }
}

/// Decompresses a log file (gzip is recognised by its bytes), checks that it is a CloudTrail log file
/// and reads its records. On error, the records before it stay in `analyzer`.
pub fn read_log_file(analyzer: &mut Analyzer, src: impl Read + 'static) -> Result<(), String> {
    let before = analyzer.records();
    let src = decompressing(src).map_err(|e| e.to_string())?;
    let src = log_file_body(src)?;
    analyzer.read(src).map_err(|e| {
        let read = analyzer.records() - before;
        let e = match e {
            ReadError::Io(io) => io_reason(&io),
            e => e.to_string(),
        };
        format!("{e} (the {read} records before it were analysed)")
    })
}

/// Only the gzip decoder raises I/O errors of another kind than `Other` here (a failed download arrives as
/// `Other`): say so, since "incomplete deflate stream" alone does not say "gzip".
fn io_reason(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::Other {
        e.to_string()
    } else {
        format!("truncated or corrupt gzip: {e}")
    }
}

/// A CloudTrail log file is one JSON object whose first member is `"Records"` (docs/cloudtrail.md, "Trail log files"). Anything
/// else under a trail's folders (a stray upload, another product's export) is refused by name rather than
/// counted as records.
fn log_file_body(mut src: Box<dyn Read>) -> Result<impl Read, String> {
    let mut head: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        match starts_like_a_log_file(&head) {
            Some(true) => return Ok(io::Cursor::new(head).chain(src)),
            Some(false) => break,
            None => {}
        }
        let n = src.read(&mut chunk).map_err(|e| io_reason(&e))?;
        if n == 0 {
            if head.is_empty() {
                return Err("not a CloudTrail log file: the object is empty".to_owned());
            }
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    let shown: String = head
        .iter()
        .take(24)
        .map(|&b| match b {
            b' ' | b'\'' => char::from(b).to_string(),
            _ => b.escape_ascii().to_string(),
        })
        .collect();
    Err(format!(
        "not a CloudTrail log file: it does not start with {{\"Records\": (it starts with \"{shown}\")"
    ))
}

/// Whether `head` starts with `{"Records"` (whitespace allowed), or `None` while it is too short to tell.
fn starts_like_a_log_file(head: &[u8]) -> Option<bool> {
    const MEMBER: &[u8] = b"\"Records\"";
    const GIVE_UP: usize = 4096;
    let trim = |b: &[u8]| -> usize { b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len()) };
    let rest = &head[trim(head)..];
    let Some(&first) = rest.first() else {
        return (head.len() > GIVE_UP).then_some(false);
    };
    if first != b'{' {
        return Some(false);
    }
    let member = &rest[1 + trim(&rest[1..])..];
    if member.len() >= MEMBER.len() {
        Some(member.starts_with(MEMBER))
    } else if !MEMBER.starts_with(member) || head.len() > GIVE_UP {
        Some(false)
    } else {
        None
    }
}

/// A blocking [`Read`] over the chunks a download sends.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Chunk>>,
    current: Option<Chunk>,
    pos: usize,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<io::Result<Chunk>>) -> Self {
        ChannelReader {
            rx,
            current: None,
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.current {
                let bytes = chunk.as_ref();
                if self.pos < bytes.len() {
                    let n = buf.len().min(bytes.len() - self.pos);
                    buf[..n].copy_from_slice(&bytes[self.pos..self.pos + n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.current = Some(chunk);
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenwatch_core::time::parse_time;

    fn at(s: &str) -> Epoch {
        parse_time(s).unwrap()
    }

    #[test]
    fn locations_parse_with_and_without_prefix() {
        let l: TrailLocation = "s3://trail-bucket/org/logs/".parse().unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("trail-bucket", "org/logs")
        );
        assert_eq!(l.logs_root(), "org/logs/AWSLogs/");
        assert_eq!(l.to_string(), "s3://trail-bucket/org/logs");
        let l: TrailLocation = "s3://trail-bucket".parse().unwrap();
        assert_eq!((l.prefix.as_str(), l.logs_root()), ("", "AWSLogs/".to_owned()));
        let l: TrailLocation = "s3://b/p/AWSLogs/123456789012/".parse().unwrap();
        assert_eq!(l.prefix, "p");
        let l: TrailLocation = "s3://b/MyAWSLogs".parse().unwrap();
        assert_eq!(l.prefix, "MyAWSLogs");
        assert!("trail-bucket/prefix".parse::<TrailLocation>().is_err());
        assert!("s3:///prefix".parse::<TrailLocation>().is_err());
    }

    #[test]
    fn a_window_lists_its_days_and_one_more_on_each_side() {
        let filter = TrailFilter {
            since: Some(at("2026-11-02T09:00:00Z")),
            until: Some(at("2026-11-03T08:00:00Z")),
            ..Default::default()
        };
        assert_eq!(
            filter.folders(0).unwrap(),
            ["2026/11/01/", "2026/11/02/", "2026/11/03/", "2026/11/04/"]
        );
        let open_ended = TrailFilter {
            since: Some(at("2026-12-31T23:00:00Z")),
            ..Default::default()
        };
        assert_eq!(
            open_ended.folders(at("2027-01-01T01:00:00Z")).unwrap(),
            ["2026/12/30/", "2026/12/31/", "2027/01/01/", "2027/01/02/"]
        );
        assert_eq!(TrailFilter::default().folders(0), None);
    }

    #[test]
    fn a_long_window_lists_months() {
        let filter = TrailFilter {
            since: Some(at("2026-01-15T00:00:00Z")),
            until: Some(at("2026-06-01T00:00:00Z")),
            ..Default::default()
        };
        assert_eq!(
            filter.folders(0).unwrap(),
            [
                "2026/01/", "2026/02/", "2026/03/", "2026/04/", "2026/05/", "2026/06/"
            ]
        );
    }

    #[test]
    fn account_folders_are_twelve_digits() {
        assert!(is_account("123456789012"));
        assert!(!is_account("o-a1b2c3d4e5"));
        assert!(!is_account("12345678901"));
        assert_eq!(last_segment("p/AWSLogs/o-a1/123456789012/"), "123456789012");
    }

    fn read(bytes: &'static [u8]) -> Result<u64, String> {
        let mut a = Analyzer::default();
        read_log_file(&mut a, bytes).map(|()| a.records())
    }

    #[test]
    fn only_records_documents_are_log_files() {
        assert_eq!(
            read(br#" { "Records" : [{"eventTime":"2026-11-02T09:00:00Z"},{}]}"#),
            Ok(2)
        );
        assert_eq!(read(br#"{"Records":[]}"#), Ok(0));
        let refused = read(br#"{"Events":[]}"#).unwrap_err();
        assert!(refused.starts_with("not a CloudTrail log file"), "{refused}");
        assert!(refused.contains(r#"{\"Events\""#), "{refused}");
        assert!(read(b"PK\x03\x04binary").unwrap_err().contains(r"PK\x03\x04"));
        assert!(read(b"").unwrap_err().contains("empty"));
        assert!(read(b"{").unwrap_err().starts_with("not a CloudTrail log file"));
        let cut = read(br#"{"Records":[{"eventTime":"2026-11-02T09:00:00Z"},{"a":"#).unwrap_err();
        assert!(cut.contains("(the 1 records before it were analysed)"), "{cut}");
    }

    #[test]
    fn a_truncated_gzip_is_named_as_such() {
        let mut a = Analyzer::default();
        assert_eq!(
            read_log_file(&mut a, std::io::Cursor::new(gzipped_empty_log())),
            Ok(())
        );
        let mut gz = gzipped_empty_log();
        gz.truncate(gz.len() / 2);
        let e = read_log_file(&mut a, std::io::Cursor::new(gz)).unwrap_err();
        assert!(e.starts_with("truncated or corrupt gzip: "), "{e}");
    }

    /// `{"Records":[]}` gzipped (`gzip -n`), so the test needs no encoder.
    fn gzipped_empty_log() -> Vec<u8> {
        vec![
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xab, 0x56, 0x0a, 0x4a, 0x4d, 0xce,
            0x2f, 0x4a, 0x29, 0x56, 0xb2, 0x8a, 0x8e, 0xad, 0x05, 0x00, 0x22, 0x0a, 0xe2, 0x96, 0x0e, 0x00,
            0x00, 0x00,
        ]
    }

    /// What a scripted S3 answers a `GET` of a key with.
    #[derive(Clone, Copy)]
    enum Answer {
        /// A whole response: status, S3 error code (or none), body.
        Full(u16, Option<&'static str>, &'static [u8]),
        /// A 200 that promises 1,000 bytes and closes the connection after a few.
        CutShort,
    }

    /// A loopback S3 that answers each `GET /bucket/KEY` as `answer(KEY)` says, one request per
    /// connection; returns its endpoint.
    async fn scripted_s3(answer: fn(&str) -> Answer) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or_default();
                    let key = path.split('?').next().unwrap_or_default().splitn(3, '/').nth(2);
                    let response = match answer(key.unwrap_or_default()) {
                        Answer::Full(status, code, body) => {
                            let body = match code {
                                Some(code) => format!(
                                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
                                     <Message>scripted</Message></Error>"
                                )
                                .into_bytes(),
                                None => body.to_vec(),
                            };
                            let mut r = format!(
                                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend(body);
                            r
                        }
                        Answer::CutShort => {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n\x1f\x8b\x08\x00"
                                .to_vec()
                        }
                    };
                    let _ = socket.write_all(&response).await;
                });
            }
        });
        url
    }

    /// A reader of bucket `b` at `endpoint`, one attempt per call (the SDK's own retries would only
    /// repeat the scripted answer).
    fn reader_at(endpoint: &str) -> TrailReader {
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::for_tests())
            .force_path_style(true)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .build();
        TrailReader::from_client(
            Client::from_conf(config),
            TrailLocation {
                bucket: "b".into(),
                prefix: String::new(),
            },
        )
    }

    /// Each object's error as (key, kind), after reading `keys` from a scripted S3.
    async fn kinds(endpoint: &str, keys: &[&str]) -> Vec<(String, ObjectErrorKind, String)> {
        let mut analyzer = Analyzer::default();
        let summary = reader_at(endpoint)
            .read_keys_into(
                &mut analyzer,
                keys.iter().map(|k| (*k).to_owned()).collect(),
                Arc::new(NoProgress),
            )
            .await;
        summary
            .errors
            .into_iter()
            .map(|e| (e.name.trim_start_matches("s3://b/").to_owned(), e.kind, e.reason))
            .collect()
    }

    fn script(key: &str) -> Answer {
        match key {
            "slow-down" => Answer::Full(503, Some("SlowDown"), b""),
            "internal-error" => Answer::Full(500, Some("InternalError"), b""),
            "cut-short" => Answer::CutShort,
            "denied" => Answer::Full(403, Some("AccessDenied"), b""),
            "gone" => Answer::Full(404, Some("NoSuchKey"), b""),
            "archived" => Answer::Full(403, Some("InvalidObjectState"), b""),
            "not-gzip" => Answer::Full(200, None, b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage"),
            "not-a-log" => Answer::Full(200, None, br#"{"hello":"world"}"#),
            _ => Answer::Full(200, None, br#"{"Records":[]}"#),
        }
    }

    #[tokio::test]
    async fn throttling_a_5xx_and_a_cut_download_are_transient() {
        let endpoint = scripted_s3(script).await;
        let errors = kinds(&endpoint, &["slow-down", "internal-error", "cut-short", "fine"]).await;
        let keys: Vec<&str> = errors.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(keys, ["cut-short", "internal-error", "slow-down"], "{errors:?}");
        for (key, kind, reason) in &errors {
            assert_eq!(*kind, ObjectErrorKind::Transient, "{key}: {reason}");
        }
        assert!(errors[2].2.contains("SlowDown"), "{errors:?}");
        assert!(errors[0].2.contains("download failed"), "{errors:?}");
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let errors = kinds(&endpoint, &["any"]).await;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].1, ObjectErrorKind::Transient, "{}", errors[0].2);
    }

    #[tokio::test]
    async fn denied_missing_archived_not_gzip_and_not_a_log_file_are_permanent() {
        let endpoint = scripted_s3(script).await;
        let errors = kinds(
            &endpoint,
            &["denied", "gone", "archived", "not-gzip", "not-a-log", "fine"],
        )
        .await;
        let keys: Vec<&str> = errors.iter().map(|(k, _, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["archived", "denied", "gone", "not-a-log", "not-gzip"],
            "{errors:?}"
        );
        for (key, kind, reason) in &errors {
            assert_eq!(*kind, ObjectErrorKind::Permanent, "{key}: {reason}");
        }
        assert!(errors[1].2.contains("AccessDenied"), "{errors:?}");
        assert!(errors[3].2.starts_with("not a CloudTrail log file"), "{errors:?}");
        assert!(errors[4].2.contains("gzip"), "{errors:?}");
    }

    #[test]
    fn an_object_error_says_whether_a_retry_can_help() {
        assert!(ObjectError::transient("s3://b/k", "SlowDown").is_transient());
        assert!(!ObjectError::permanent("s3://b/k", "AccessDenied").is_transient());
        assert!(ObjectError::of_port("k", &PortError::transient("503")).is_transient());
        assert!(!ObjectError::of_port("k", &PortError::permanent("403")).is_transient());
        assert_eq!(ObjectError::default().kind, ObjectErrorKind::Permanent);
    }

    #[test]
    fn the_channel_reader_hands_out_chunks_in_order_then_the_error() {
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(Ok(Chunk::from_static(b"ab"))).unwrap();
        tx.try_send(Ok(Chunk::from_static(b"cde"))).unwrap();
        tx.try_send(Err(io::Error::other("cut"))).unwrap();
        drop(tx);
        let mut r = ChannelReader::new(rx);
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert_eq!((out.as_slice(), err.to_string().as_str()), (&b"abcde"[..], "cut"));
    }
}

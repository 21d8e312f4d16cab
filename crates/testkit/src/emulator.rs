//! The local AWS emulators that `scripts/emulators.sh` starts on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;

/// Which emulator a test talks to.
#[derive(Clone, Copy, Debug)]
pub enum Emulator {
    /// moto: most of the tests.
    Moto,
    /// ministack: where moto falls short. It serialises its DynamoDB requests (moto loses writes under
    /// concurrent transactions), evaluates bucket policies per request, answers LookupEvents and runs
    /// Lambda functions.
    Ministack,
}

impl Emulator {
    /// The variable `target/emulators/env` sets to this emulator's endpoint.
    pub fn variable(self) -> &'static str {
        match self {
            Emulator::Moto => "TOKENWATCH_MOTO_ENDPOINT",
            Emulator::Ministack => "TOKENWATCH_MINISTACK_ENDPOINT",
        }
    }

    /// The endpoint, or a failure that says how to get one: a test that needs an emulator fails without
    /// it, never passes silently.
    pub fn endpoint(self) -> String {
        let var = self.variable();
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "{var} is not set: this test needs the local AWS emulators. Run scripts/test.sh, or \
                 `scripts/emulators.sh install && scripts/emulators.sh start && source target/emulators/env` \
                 and run the tests again"
            ),
        }
    }

    /// An SDK configuration for this emulator: its endpoint, us-east-1, fake credentials (so that a test
    /// never picks up, or needs, real ones).
    pub async fn sdk(self) -> SdkConfig {
        self.sdk_as("testing").await
    }

    /// [`Emulator::sdk`] as the account behind `access_key`: ministack scopes requests to the account an
    /// access key names.
    pub async fn sdk_as(self, access_key: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                access_key,
                "testing",
                None,
                None,
                "tokenwatch-testkit",
            ))
            .load()
            .await
    }
}

/// A name no other test (or earlier run against the same emulator) uses: tests share one emulator, and
/// it outlives a run.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

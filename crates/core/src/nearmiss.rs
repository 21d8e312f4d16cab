//! Near misses (docs/rules.md, "Near misses"): a session signing calls later before its lease end than
//! its own SDK's refreshing provider would ever have used it was not managed by that provider (it was
//! copied out of it: environment variables, a client built once). It did not fail this time; the next run
//! that lasts a little longer fails at the lease boundary.
//!
//! The rule is pure: given when a session was last used, by which client, and when its lease ends, it says
//! whether that was a near miss and how close it came. Only clients whose refresh window is documented in
//! their SDK's source take part; the others never give a near miss.

use crate::model::Client;
use crate::time::Epoch;

/// When a client's refreshing credential provider swaps a session for a new one, in seconds before the
/// session's lease end, by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefreshWindow {
    /// The earliest it starts to refresh.
    pub from: Epoch,
    /// The latest: past this, the provider refreshes before it signs a call (or fails the call), so a
    /// managed session is never used closer to its lease end.
    pub by: Epoch,
    /// The provider the window belongs to, as a near miss names it.
    pub provider: &'static str,
}

/// The refresh window of `client`'s default refreshing provider, where its SDK's source states one
/// (docs/rules.md lists the source of each). `None` for clients without a documented window or without
/// one at all (the Go SDK v2's credentials cache refreshes only once the session expired).
pub fn refresh_window(client: Client) -> Option<RefreshWindow> {
    let window = |from, by, provider| Some(RefreshWindow { from, by, provider });
    match client {
        // botocore's RefreshableCredentials: advisory refresh 15 min before expiry, mandatory 10 min.
        Client::Boto3 | Client::Botocore | Client::AwsCliV1 | Client::AwsCliV2 => {
            window(15 * 60, 10 * 60, "botocore")
        }
        // The Java SDK v2's STS providers: prefetch 5 min before, stale (blocking) 1 min before.
        Client::JavaV2 => window(5 * 60, 60, "the Java SDK v2's STS provider"),
        // The JavaScript SDK v3's default provider chain is memoized until 5 min before expiry.
        Client::JsV3 => window(5 * 60, 5 * 60, "the JavaScript SDK v3's default provider"),
        // The JavaScript SDK v2's AWS.Credentials: expiryWindow 15 s.
        Client::JsV2 => window(15, 15, "the JavaScript SDK v2's AWS.Credentials"),
        // The Rust SDK's lazy identity cache: a 10 s buffer plus up to half of it as jitter.
        Client::Rust => window(15, 10, "the Rust SDK's identity cache"),
        Client::GoV1
        | Client::GoV2
        | Client::JavaV1
        | Client::Dotnet
        | Client::Php
        | Client::Ruby
        | Client::Powershell
        | Client::Terraform
        | Client::Console => None,
    }
}

/// A session used closer to its lease end than its client's provider would have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NearMiss {
    /// How long before the lease end the session was last used.
    pub seconds_before_expiry: Epoch,
    /// The window the client's provider refreshes in.
    pub window: RefreshWindow,
}

impl NearMiss {
    /// How close it came, in words: "used 42 s before expiry; botocore refreshes 10–15 min before".
    pub fn describe(&self) -> String {
        format!(
            "used {} before expiry; {} refreshes {} before",
            span(self.seconds_before_expiry),
            self.window.provider,
            range(self.window.by, self.window.from)
        )
    }
}

/// Whether a session last used at `last_use` by `client`, whose lease ends at `lease_end`, was a near miss:
/// used after its client's provider would have refreshed it (later than `window.by` before the lease end)
/// and before the lease end (a use at or past it failed, and is the failure's group, not a near miss).
pub fn near_miss(last_use: Epoch, client: Client, lease_end: Epoch) -> Option<NearMiss> {
    let window = refresh_window(client)?;
    let before = lease_end - last_use;
    (before > 0 && before < window.by).then_some(NearMiss {
        seconds_before_expiry: before,
        window,
    })
}

fn span(seconds: Epoch) -> String {
    if seconds < 120 {
        format!("{seconds} s")
    } else {
        format!("{} min", seconds / 60)
    }
}

fn range(by: Epoch, from: Epoch) -> String {
    match (by == from, by % 60 == 0 && from % 60 == 0) {
        (true, _) => span(by),
        (false, true) => format!("{}–{} min", by / 60, from / 60),
        (false, false) => format!("{}–{} s", by, from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const END: Epoch = 1_800_000_000;

    #[test]
    fn a_boto3_session_used_42_s_before_expiry_is_a_near_miss_and_says_how_close() {
        let miss = near_miss(END - 42, Client::Boto3, END).expect("a near miss");
        assert_eq!(miss.seconds_before_expiry, 42);
        assert_eq!(
            miss.describe(),
            "used 42 s before expiry; botocore refreshes 10–15 min before"
        );
    }

    #[test]
    fn a_boto3_session_last_used_before_botocore_must_refresh_is_no_near_miss() {
        // 11 minutes before: inside the advisory window a managed session may still sign calls.
        assert_eq!(near_miss(END - 11 * 60, Client::Boto3, END), None);
        assert!(near_miss(END - 9 * 60, Client::AwsCliV2, END).is_some());
    }

    #[test]
    fn a_use_at_or_after_the_lease_end_is_a_failure_not_a_near_miss() {
        assert_eq!(near_miss(END, Client::Boto3, END), None);
        assert_eq!(near_miss(END + 5, Client::Boto3, END), None);
    }

    #[test]
    fn each_documented_window_flags_inside_it_and_not_before_it() {
        for (client, by) in [
            (Client::Botocore, 600),
            (Client::AwsCliV1, 600),
            (Client::JavaV2, 60),
            (Client::JsV3, 300),
            (Client::JsV2, 15),
            (Client::Rust, 10),
        ] {
            assert!(
                near_miss(END - (by - 1), client, END).is_some(),
                "{client} just inside"
            );
            assert_eq!(near_miss(END - by, client, END), None, "{client} at its window");
        }
    }

    #[test]
    fn go_v2_uses_its_session_to_the_last_second_and_that_is_no_near_miss() {
        // Its credentials cache's ExpiryWindow defaults to zero: the last second is normal.
        assert_eq!(near_miss(END - 1, Client::GoV2, END), None);
    }

    #[test]
    fn clients_without_a_documented_window_never_give_a_near_miss() {
        for client in [
            Client::JavaV1,
            Client::GoV1,
            Client::Dotnet,
            Client::Console,
            Client::Terraform,
        ] {
            assert_eq!(refresh_window(client), None, "{client}");
            assert_eq!(near_miss(END - 1, client, END), None, "{client}");
        }
    }

    #[test]
    fn windows_in_words() {
        let java = near_miss(END - 30, Client::JavaV2, END).unwrap();
        assert_eq!(
            java.describe(),
            "used 30 s before expiry; the Java SDK v2's STS provider refreshes 1–5 min before"
        );
        let js = near_miss(END - 200, Client::JsV3, END).unwrap();
        assert!(
            js.describe().starts_with("used 3 min before expiry;"),
            "{}",
            js.describe()
        );
        assert!(
            js.describe().ends_with("refreshes 5 min before"),
            "{}",
            js.describe()
        );
        let rust = near_miss(END - 3, Client::Rust, END).unwrap();
        assert!(
            rust.describe().ends_with("refreshes 10–15 s before"),
            "{}",
            rust.describe()
        );
    }
}

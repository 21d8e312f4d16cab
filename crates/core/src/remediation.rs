//! The fix, written for the client that failed and where its credentials came from.
//!
//! Each text is a one-line fix (what tables, pages and chat show first) and the detail that explains it;
//! the report document carries them joined as `fix: detail`. Only fixed text and our own enums go in:
//! nothing from the event.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};

use crate::model::{Client, CredentialSource, Verdict};

/// What to do about a group: the fix in one line, and why. The texts are shared: a report of a million
/// groups holds each once (README, "Memory").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remediation {
    /// The fix, one clause (no trailing period).
    pub fix: Arc<str>,
    /// Why, and what to stop doing.
    pub detail: Arc<str>,
}

impl Remediation {
    fn new(fix: &str, detail: &str) -> Remediation {
        Remediation {
            fix: fix.into(),
            detail: detail.into(),
        }
    }
}

/// The whole text, as the report document's `remediation` field carries it: `fix: detail`.
impl fmt::Display for Remediation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.fix, self.detail)
    }
}

/// The remediation for a group.
pub fn remediation(verdict: Verdict, source: CredentialSource, client: Option<Client>) -> Remediation {
    type Written = HashMap<(Verdict, CredentialSource, Option<Client>), Remediation>;
    static WRITTEN: LazyLock<Mutex<Written>> = LazyLock::new(Mutex::default);
    // A poisoned lock only means another thread panicked mid-insert; the texts written are still whole.
    let mut written = WRITTEN.lock().unwrap_or_else(|e| e.into_inner());
    written
        .entry((verdict, source, client))
        .or_insert_with(|| write(verdict, source, client))
        .clone()
}

fn write(verdict: Verdict, source: CredentialSource, client: Option<Client>) -> Remediation {
    match verdict {
        // A near miss is the same copied credential, found before it failed.
        Verdict::StaleCache | Verdict::NearMiss => {
            let mut fix = refreshing_provider(client, source);
            if let Some(note) = source_note(source) {
                fix.detail = format!("{} {note}", fix.detail).into();
            }
            fix
        }
        Verdict::RefreshRace => Remediation::new(
            "No action needed unless it recurs",
            "the client renewed its credentials a little after they expired and recovered by itself. If \
              it repeats, renew earlier (botocore refreshes 15 min before expiry, the Rust SDK 10 s) or \
              check the host clock.",
        ),
        Verdict::PausedProcess => Remediation::new(
            "Make the process resolve credentials again after it resumes, or restart it",
            "it slept past its session's expiry (laptop lid, paused container, stopped debugger) and woke \
              holding expired credentials. A refreshing provider does this by itself; credentials copied \
              into environment variables or a long-lived client do not.",
        ),
        Verdict::ClockSkew => Remediation::new(
            "Check the host clock (chrony or systemd-timesyncd) and any presigned URL's X-Amz-Expires",
            "the session was still valid when these calls were rejected, so the request's date stamp or \
              expiry is off, not the credentials.",
        ),
        Verdict::WebIdentityTokenExpired => Remediation::new(
            "Read the web identity token afresh for every AssumeRoleWithWebIdentity call",
            "the OIDC token or SAML assertion presented to STS had expired. Point \
              AWS_WEB_IDENTITY_TOKEN_FILE at the file the platform rotates (EKS projects a new \
              service-account token in place; do not copy it), and in CI request a new OIDC token for each \
              job step that assumes the role.",
        ),
        Verdict::Unknown => Remediation::new(
            "Find the issuing call to measure the session's age",
            "these failures carry no creationDate and no AssumeRole/GetSessionToken for their access key \
              was seen. Include the trail files (or the region) where the session was issued, then look \
              for credentials copied out of a refreshing provider.",
        ),
    }
}

fn refreshing_provider(client: Option<Client>, source: CredentialSource) -> Remediation {
    if source == CredentialSource::Sso {
        return match client {
            Some(Client::AwsCliV1 | Client::AwsCliV2) | None => Remediation::new(
                "Run `aws sso login` with an `sso_session` profile and let the CLI fetch role credentials from it",
                "do not export AWS_ACCESS_KEY_ID/AWS_SESSION_TOKEN copied from the SSO portal, which die when \
                  the permission set's session ends.",
            ),
            _ => Remediation::new(
                "Use the SDK's SSO provider through a profile with `sso_session` (after `aws sso login`)",
                "it refreshes role credentials from the SSO token cache, where credentials copied from the \
                  SSO portal die when the permission set's session ends.",
            ),
        };
    }
    if source == CredentialSource::Container {
        return Remediation::new(
            "Leave the SDK's container credential provider in place",
            "the SDK reads the task's (or pod's) credentials from the container credential endpoint \
              (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI) and fetches new ones before they expire. \
              Build clients from the default credential chain, and do not copy the endpoint's keys into \
              environment variables, files or a client built once; a task cannot assume its task role \
              itself.",
        );
    }
    if source == CredentialSource::Saml {
        // No role profile or SDK provider can renew a SAML session: only a new assertion can.
        return Remediation::new(
            "Sign in through the identity provider again, through its CLI tool set up as a `credential_process`",
            "a SAML session (Okta, Entra ID, AD FS) is renewed only with a fresh assertion from the identity \
              provider, so neither the SDK nor the AWS CLI can renew it alone. Run the provider's tool \
              (okta-aws-cli, saml2aws, gimme-aws-creds) as the profile's `credential_process` where it \
              supports one, so it signs in again when the session ends, instead of exporting its keys into \
              the shell; ask for a longer session (within the role's MaxSessionDuration) if a run needs one.",
        );
    }
    if source == CredentialSource::FederationToken {
        return Remediation::new(
            "Have the broker issue a new GetFederationToken session before the current one expires",
            "no SDK provider renews a federated user's session, as only the broker that called \
              GetFederationToken with its long-term key can issue another. Have clients ask the broker \
              again before the expiration it handed out (or on an ExpiredToken error) instead of keeping \
              the first credentials for the life of the process.",
        );
    }
    if source == CredentialSource::InstanceProfile {
        return Remediation::new(
            "Let the SDK's default credential chain read the instance profile from IMDS",
            "it rotates credentials before they expire. Remove AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY \
              and AWS_SESSION_TOKEN copied out of the metadata service from the environment and config \
              files.",
        );
    }
    match client {
        Some(Client::Boto3 | Client::Botocore) => Remediation::new(
            "Let botocore refresh the role",
            "configure `role_arn` + `source_profile` (or `credential_source`) in ~/.aws/config and build \
              clients from that profile's Session, so its AssumeRoleProvider renews 15 minutes before \
              expiry. Never pass aws_session_token= to boto3.client() or keep a client built from copied \
              credentials for longer than the session.",
        ),
        Some(Client::AwsCliV1 | Client::AwsCliV2) => Remediation::new(
            "Use a profile with `role_arn` + `source_profile` instead of exporting AWS_SESSION_TOKEN",
            "the CLI assumes the role itself and renews it, where exported credentials stop working when \
              the session ends.",
        ),
        // Refreshes on the calling thread unless async refresh is turned on (docs/sts.md, "Remediation texts").
        Some(Client::JavaV2) => Remediation::new(
            "Use one StsAssumeRoleCredentialsProvider (software.amazon.awssdk.services.sts.auth) for every \
              client",
            "it renews the session 5 minutes before expiry, on the calling thread by default and in the \
              background only with asyncCredentialUpdateEnabled(true). Replace \
              StaticCredentialsProvider/AwsSessionCredentials built once from an AssumeRole response.",
        ),
        Some(Client::JavaV1) => Remediation::new(
            "Use STSAssumeRoleSessionCredentialsProvider, which renews before expiry",
            "replace BasicSessionCredentials built once from an AssumeRole response.",
        ),
        Some(Client::GoV2) => Remediation::new(
            "Wrap stscreds.NewAssumeRoleProvider in aws.NewCredentialsCache and set it as the config's \
              Credentials",
            "replace credentials.NewStaticCredentialsProvider built from an AssumeRole response.",
        ),
        Some(Client::GoV1) => Remediation::new(
            "Use stscreds.NewCredentials(sess, roleARN), which renews before expiry",
            "replace credentials.NewStaticCredentials built from an AssumeRole response.",
        ),
        Some(Client::JsV3) => Remediation::new(
            "Pass `fromTemporaryCredentials({ params: { RoleArn } })` (or `fromIni` with a role profile) from \
              `@aws-sdk/credential-providers` as the client's credentials",
            "a fixed { accessKeyId, secretAccessKey, sessionToken } object is never renewed.",
        ),
        Some(Client::JsV2) => Remediation::new(
            "Use AWS.ChainableTemporaryCredentials, which renews before expiry",
            "replace AWS.Credentials built once from an AssumeRole response.",
        ),
        Some(Client::Rust) => Remediation::new(
            "Use aws_config::sts::AssumeRoleProvider as the credentials provider (the SDK's identity \
              cache then renews it)",
            "replace Credentials::new(...) built once from an AssumeRole response.",
        ),
        Some(Client::Dotnet) => Remediation::new(
            "Use AssumeRoleAWSCredentials (Amazon.Runtime), which renews before expiry",
            "replace SessionAWSCredentials built once from an AssumeRole response.",
        ),
        Some(Client::Php) => Remediation::new(
            "Use CredentialProvider::memoize(CredentialProvider::assumeRole(...))",
            "it renews before expiry, where Credentials built once from an AssumeRole response do not.",
        ),
        Some(Client::Ruby) => Remediation::new(
            "Use Aws::AssumeRoleCredentials, which renews before expiry",
            "replace Aws::Credentials built once from an AssumeRole response.",
        ),
        Some(Client::Powershell) => Remediation::new(
            "Use a role profile (Set-AWSCredential -ProfileName with role_arn + source_profile) instead \
              of passing the keys from Use-STSRole",
            "the profile renews, copied keys expire.",
        ),
        Some(Client::Terraform) => Remediation::new(
            "Let the provider assume the role itself",
            "add an `assume_role` block instead of exporting temporary keys into the run, and give runs \
              longer than an hour a longer `duration` (within the role's MaxSessionDuration).",
        ),
        Some(Client::Console) => Remediation::new(
            "Sign in again",
            "the console session outlived its credentials. Raise the role's MaxSessionDuration if \
              sessions routinely need to be longer.",
        ),
        None => Remediation::new(
            "Get credentials from a refreshing provider (a role profile, the SDK's assume-role provider, \
              or the default chain) instead of copying them into environment variables, files or a client \
              built once",
            "the workload keeps presenting credentials past their lease.",
        ),
    }
}

fn source_note(source: CredentialSource) -> Option<&'static str> {
    match source {
        CredentialSource::RoleChaining => Some(
            "This session was role chaining (a role assuming a role), which AWS limits to one hour: an \
              AssumeRole asking for a DurationSeconds over 3600 fails rather than being shortened, so a longer \
              duration is not an option. Renew before the hour ends (the refreshing provider does), or assume \
              the target role directly from a user or service identity.",
        ),
        CredentialSource::SessionToken => Some(
            "A GetSessionToken session ends when the duration it was issued for runs out, and is renewed only \
              by calling GetSessionToken again with the long-term key (and a fresh MFA code where MFA is required), so it does not suit an \
              unattended job: give the job a role its SDK renews by itself (an instance profile or task role, or \
              a profile with `role_arn` + `credential_source`). `mfa_serial` only helps a person at a terminal: \
              the SDK or CLI asks for a code at every renewal.",
        ),
        CredentialSource::WebIdentity => Some(
            "For web identity, set AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE and let the SDK's web identity \
              provider assume the role; do not export the credentials it returns.",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_cache_fix_names_the_refreshing_provider_of_the_client() {
        let cases = [
            (Client::Boto3, "AssumeRoleProvider"),
            (Client::JavaV2, "StsAssumeRoleCredentialsProvider"),
            (Client::GoV2, "stscreds.NewAssumeRoleProvider"),
            (Client::JsV3, "fromTemporaryCredentials"),
            (Client::Rust, "aws_config::sts::AssumeRoleProvider"),
        ];
        for (client, provider) in cases {
            let text =
                remediation(Verdict::StaleCache, CredentialSource::AssumeRole, Some(client)).to_string();
            assert!(text.contains(provider), "{client}: {text}");
        }
    }

    #[test]
    fn source_specific_advice_is_added_or_takes_over() {
        let sso = remediation(Verdict::StaleCache, CredentialSource::Sso, Some(Client::AwsCliV2)).to_string();
        assert!(sso.contains("aws sso login"));
        let chained = remediation(
            Verdict::StaleCache,
            CredentialSource::RoleChaining,
            Some(Client::JavaV2),
        )
        .to_string();
        assert!(chained.contains("one hour") && chained.contains("StsAssumeRoleCredentialsProvider"));
        assert!(
            chained.contains("fails rather than being shortened") && !chained.contains("caps"),
            "role chaining past an hour fails: {chained}"
        );
        let plain = remediation(
            Verdict::StaleCache,
            CredentialSource::AssumeRole,
            Some(Client::JavaV2),
        )
        .to_string();
        assert!(!plain.contains("one hour"));
    }

    #[test]
    fn java_v2_refreshes_in_the_background_only_when_asked_to() {
        let java = remediation(
            Verdict::StaleCache,
            CredentialSource::AssumeRole,
            Some(Client::JavaV2),
        )
        .to_string();
        assert!(java.contains("asyncCredentialUpdateEnabled(true)"), "{java}");
        assert!(!java.contains("which refreshes in the background"), "{java}");
    }

    #[test]
    fn an_unattended_session_token_job_is_not_told_to_answer_mfa_prompts() {
        let backup = remediation(
            Verdict::StaleCache,
            CredentialSource::SessionToken,
            Some(Client::AwsCliV1),
        )
        .to_string();
        assert!(backup.contains("unattended job"), "{backup}");
        assert!(!backup.contains("so the SDK or CLI asks and caches"), "{backup}");
        let plain = remediation(
            Verdict::StaleCache,
            CredentialSource::AssumeRole,
            Some(Client::AwsCliV1),
        )
        .to_string();
        assert!(!plain.contains("mfa_serial"), "{plain}");
    }

    fn every_client() -> impl Iterator<Item = Option<Client>> {
        Client::ALL.iter().copied().map(Some).chain([None])
    }

    #[test]
    fn a_saml_session_is_not_told_to_use_a_role_profile() {
        for client in every_client() {
            let text = remediation(Verdict::StaleCache, CredentialSource::Saml, client).to_string();
            for wrong in [
                "role_arn",
                "source_profile",
                "role profile",
                "AssumeRole response",
            ] {
                assert!(!text.contains(wrong), "{client:?}: {text}");
            }
            assert!(text.contains("identity provider"), "{client:?}: {text}");
        }
        // Negative case: a plain assume-role session of the CLI is.
        let cli = remediation(
            Verdict::StaleCache,
            CredentialSource::AssumeRole,
            Some(Client::AwsCliV2),
        )
        .to_string();
        assert!(cli.contains("role_arn"), "{cli}");
    }

    #[test]
    fn a_federation_token_session_is_renewed_by_its_broker_not_an_assume_role_provider() {
        for client in every_client() {
            let text =
                remediation(Verdict::StaleCache, CredentialSource::FederationToken, client).to_string();
            assert!(text.contains("broker"), "{client:?}: {text}");
            for wrong in ["AssumeRole", "role_arn"] {
                assert!(!text.contains(wrong), "{client:?}: {text}");
            }
        }
        let java = remediation(
            Verdict::StaleCache,
            CredentialSource::AssumeRole,
            Some(Client::JavaV1),
        )
        .to_string();
        assert!(java.contains("AssumeRole response"), "{java}");
    }

    #[test]
    fn a_session_token_text_does_not_assume_the_twelve_hour_default() {
        // A 900 s GetSessionToken session gets the same text, so it must not say 12 h.
        for client in every_client() {
            let text = remediation(Verdict::StaleCache, CredentialSource::SessionToken, client).to_string();
            for wrong in ["12 hours", "12 h", "twelve"] {
                assert!(!text.contains(wrong), "{client:?}: {text}");
            }
            assert!(text.contains("GetSessionToken"), "{client:?}: {text}");
        }
    }

    #[test]
    fn other_verdicts_do_not_blame_the_cache() {
        let skew = remediation(
            Verdict::ClockSkew,
            CredentialSource::AssumeRole,
            Some(Client::Boto3),
        )
        .to_string();
        assert!(skew.contains("clock") && !skew.contains("botocore refresh"));
        let web = remediation(
            Verdict::WebIdentityTokenExpired,
            CredentialSource::WebIdentity,
            None,
        )
        .to_string();
        assert!(web.contains("AWS_WEB_IDENTITY_TOKEN_FILE"));
    }

    #[test]
    fn the_fix_of_a_code_span_is_never_cut_inside_it() {
        let js = remediation(
            Verdict::StaleCache,
            CredentialSource::AssumeRole,
            Some(Client::JsV3),
        );
        assert!(
            js.fix
                .contains("`fromTemporaryCredentials({ params: { RoleArn } })`"),
            "{}",
            js.fix
        );
        assert!(js.to_string().starts_with(&format!("{}: ", js.fix)));
        for verdict in Verdict::ALL {
            for source in CredentialSource::ALL {
                for client in Client::ALL.iter().copied().map(Some).chain([None]) {
                    let r = remediation(*verdict, *source, client);
                    assert_eq!(r.fix.matches('`').count() % 2, 0, "{}", r.fix);
                    assert!(!r.fix.ends_with('.') && !r.detail.is_empty(), "{r:?}");
                }
            }
        }
    }
}

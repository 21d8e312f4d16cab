//! One record at a time: is it an expiry failure, an issuing call, or neither; and who made it.
//!
//! Everything here is a pure function of one record (and its envelope), so the detector Lambda and the
//! offline analyzer share it unchanged. See docs/rules.md for the rules in prose.

use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

use crate::model::{Client, IdentityType, StsCall};
use crate::record::{EnvelopeContext, Record};
use crate::time::{Epoch, parse_time};

/// What one record means to tokenwatch.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// A call rejected for expired credentials.
    Failure(Failure),
    /// An STS call that issued a session.
    Issuance(Issuance),
    /// Anything else.
    Other,
}

/// A call rejected for expired credentials, with what identifies its session.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// `eventID`, used to count each failure once.
    pub event_id: Option<String>,
    /// `eventTime`.
    pub time: Epoch,
    /// The account the call was made in.
    pub account: Option<String>,
    /// The role, user or federated user that owns the session (see [`Failure::principal`] rules).
    pub principal: Option<String>,
    /// The role session name.
    pub session: Option<String>,
    /// `userIdentity.accessKeyId`.
    pub access_key_id: Option<String>,
    /// `sessionContext.attributes.creationDate`.
    pub creation_date: Option<Epoch>,
    /// `errorCode`, or `(message)` when only `errorMessage` said the token expired.
    pub error_code: String,
    /// `service:EventName`, e.g. `s3:ListBuckets`.
    pub event_name: String,
    /// `sourceIPAddress`.
    pub source_ip: Option<String>,
    /// The client recognised from `userAgent`.
    pub client: Option<Client>,
    /// The failure is an STS call presenting an OIDC token or SAML assertion (`AssumeRoleWith*`).
    pub token_call: Option<StsCall>,
    /// The `roleSessionName` a failed `AssumeRoleWith*` call asked for (its group's session is
    /// [`ANY_SESSION`]).
    pub requested_session: Option<String>,
    /// What the identity block says about where the credentials came from.
    pub hints: IdentityHints,
}

/// Identity facts that decide the credential source.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdentityHints {
    /// `userIdentity.type`.
    pub identity_type: Option<IdentityType>,
    /// `sessionContext.ec2RoleDelivery` is set: credentials came from IMDS.
    pub ec2_role_delivery: bool,
    /// `sessionContext.webIdFederationData.federatedProvider` is set.
    pub web_identity: bool,
}

/// An STS call that issued a session, keyed by the access key it handed out.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Issuance {
    /// `responseElements.credentials.accessKeyId`.
    pub access_key_id: String,
    /// The account of the principal (the role's account for AssumeRole*).
    pub account: Option<String>,
    /// The role ARN (with path), IAM user ARN or federated user ARN the session belongs to.
    pub principal: Option<String>,
    /// The session name.
    pub session: Option<String>,
    /// `eventTime` of the issuing call.
    pub issued_at: Epoch,
    /// `requestParameters.durationSeconds`.
    pub duration_seconds: Option<u64>,
    /// `responseElements.credentials.expiration`.
    pub expiration: Option<Epoch>,
    /// Which call issued it.
    pub call: StsCall,
    /// `AssumeRole` made by an assumed-role session.
    pub chained: bool,
    /// Made by a service for a container (ECS for a task, EKS for a pod): `ecs-tasks.amazonaws.com` or
    /// `pods.eks.amazonaws.com` as the caller.
    pub for_container: bool,
}

const STS: &str = "sts.amazonaws.com";

/// The session of the group of a role's failed `AssumeRoleWith*` calls. Their session name is the
/// caller's to choose, and the call needs no AWS credentials (anyone holding an expired token, or a forged
/// one, can make it), so a name per group would let a caller open a group, and a page, per name: they are
/// one group per role, the names listed ([`crate::stats::FailureStats::requested_sessions`];
/// docs/rules.md). Not a legal role session name (`[\w+=,.@-]*`), and no session pattern, so no real
/// session or workload shares the group.
pub const ANY_SESSION: &str = "(any session)";

static EXPIRED_MESSAGE: LazyLock<Regex> = LazyLock::new(|| {
    RegexBuilder::new(r"security token included in the request is expired|provided token has expired")
        .case_insensitive(true)
        .unicode(false)
        .build()
        .expect("valid regex")
});

/// Error codes that look related but are not expiry, whatever their message says.
const NEVER: [&str; 5] = [
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "UnrecognizedClient",
    "Throttl",
];

/// Is this `errorCode`/`errorMessage` pair an expired-credential failure?
pub fn is_expiry(error_code: Option<&str>, error_message: Option<&str>) -> bool {
    if let Some(code) = error_code {
        // EC2 and other query-protocol services prefix codes with the fault's side.
        let code = code
            .strip_prefix("Client.")
            .or_else(|| code.strip_prefix("Server."))
            .unwrap_or(code);
        if code == "RequestExpired"
            || code.ends_with("ExpiredToken")
            || code.ends_with("ExpiredTokenException")
        {
            return true;
        }
        if NEVER.iter().any(|n| code.contains(n)) {
            return false;
        }
    }
    error_message.is_some_and(|m| EXPIRED_MESSAGE.is_match(m))
}

static CLIENTS: LazyLock<Vec<(Regex, Client)>> = LazyLock::new(|| {
    [
        // The consoles first: the S3 console's agent also names the Java SDK it is built on
        // (`[S3Console/0.4, aws-internal/3 aws-sdk-java/1.12.750 ...]`), and a console session's fix is not
        // an SDK's.
        (
            r"^S3Console/|^console(\.[a-z0-9-]+)?\.amazonaws\.com$|^AWS Internal$|signin\.amazonaws\.com|AWS-Console",
            Client::Console,
        ),
        (r"Terraform/", Client::Terraform),
        (r"aws-cli/2", Client::AwsCliV2),
        (r"aws-cli/1", Client::AwsCliV1),
        (r"Boto3/", Client::Boto3),
        (r"Botocore/", Client::Botocore),
        (r"aws-sdk-java/2", Client::JavaV2),
        (r"aws-sdk-java/1", Client::JavaV1),
        (r"aws-sdk-go-v2", Client::GoV2),
        (r"aws-sdk-go/", Client::GoV1),
        (r"aws-sdk-js/3|aws-sdk-js-v3", Client::JsV3),
        (r"aws-sdk-js/2|aws-sdk-nodejs/2", Client::JsV2),
        (r"aws-sdk-rust", Client::Rust),
        // PowerShell's agent also names the .NET SDK it is built on.
        (r"AWSPowerShell|aws-powershell", Client::Powershell),
        (r"aws-sdk-dotnet", Client::Dotnet),
        (r"aws-sdk-php", Client::Php),
        (r"aws-sdk-ruby", Client::Ruby),
    ]
    .into_iter()
    .map(|(p, c)| {
        (
            RegexBuilder::new(p)
                .case_insensitive(true)
                .unicode(false)
                .build()
                .expect("valid regex"),
            c,
        )
    })
    .collect()
});

/// The client a `userAgent` names, first match in the order of docs/rules.md.
pub fn client_of(user_agent: &str) -> Option<Client> {
    // CloudTrail caps userAgent at 1 KB; a longer value is not a real one.
    let ua = user_agent.get(..user_agent.len().min(2048)).unwrap_or(user_agent);
    let ua = ua.trim().trim_start_matches('[').trim_end_matches(']');
    CLIENTS.iter().find(|(re, _)| re.is_match(ua)).map(|(_, c)| *c)
}

/// The parts of `arn:P:sts::A:assumed-role/ROLE/SESSION`.
pub struct AssumedRoleArn<'a> {
    /// Partition (`aws`, `aws-cn`, `aws-us-gov`).
    pub partition: &'a str,
    /// Account id.
    pub account: &'a str,
    /// Role name (without path).
    pub role: &'a str,
    /// Role session name.
    pub session: &'a str,
}

impl<'a> AssumedRoleArn<'a> {
    /// Splits an assumed-role ARN; `None` for any other ARN.
    pub fn parse(arn: &'a str) -> Option<Self> {
        let Arn {
            partition,
            service: "sts",
            account,
            resource,
            ..
        } = Arn::parse(arn)?
        else {
            return None;
        };
        let rest = resource.strip_prefix("assumed-role/")?;
        let (role, session) = rest.split_once('/')?;
        Some(AssumedRoleArn {
            partition,
            account,
            role,
            session,
        })
    }

    /// The role's IAM ARN (the path is not recoverable from an assumed-role ARN).
    pub fn role_arn(&self) -> String {
        format!("arn:{}:iam::{}:role/{}", self.partition, self.account, self.role)
    }
}

/// The six fields of an ARN (`arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`), unchecked but for the
/// leading `arn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arn<'a> {
    /// `aws`, `aws-cn`, `aws-us-gov`.
    pub partition: &'a str,
    /// `iam`, `sts`, ...
    pub service: &'a str,
    /// Empty for global services.
    pub region: &'a str,
    /// Account id.
    pub account: &'a str,
    /// The rest, colons included.
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// Splits `arn`; `None` unless it has six fields and starts with `arn`.
    pub fn parse(arn: &'a str) -> Option<Self> {
        let mut parts = arn.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        Some(Arn {
            partition: parts.next()?,
            service: parts.next()?,
            region: parts.next()?,
            account: parts.next()?,
            resource: parts.next()?,
        })
    }
}

/// The account field of any ARN.
pub fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// The last path segment of a role ARN: `arn:aws:iam::A:role/path/NAME` → `NAME`.
pub fn role_name(principal: &str) -> Option<&str> {
    if let Some(a) = AssumedRoleArn::parse(principal) {
        return Some(a.role);
    }
    let resource = principal.splitn(6, ':').nth(5)?;
    resource
        .strip_prefix("role/")
        .map(|r| r.rsplit('/').next().unwrap_or(r))
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_owned)
}

fn service_prefix(event_source: &str) -> &str {
    event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(event_source)
}

/// Reads one record. `env` fills in what an EventBridge envelope knows and the record omits.
pub fn classify(rec: &Record, env: &EnvelopeContext) -> Observation {
    let Some(time) = rec.event_time.get().and_then(parse_time) else {
        return Observation::Other;
    };
    if is_expiry(rec.error_code.get(), rec.error_message.get()) {
        return Observation::Failure(failure(rec, env, time));
    }
    if rec.error_code.get().is_none()
        && rec.event_source.get() == Some(STS)
        && let Some(call) = rec.event_name.get().and_then(StsCall::from_event_name)
        && let Some(issuance) = issuance(rec, call, time)
    {
        return Observation::Issuance(issuance);
    }
    Observation::Other
}

fn failure(rec: &Record, env: &EnvelopeContext, time: Epoch) -> Failure {
    let ui = &rec.user_identity;
    let ctx = &ui.session_context;
    let token_call = (rec.event_source.get() == Some(STS))
        .then(|| rec.event_name.get().and_then(StsCall::from_event_name))
        .flatten()
        .filter(|c| c.presents_external_token());
    let assumed = ui.arn.get().and_then(AssumedRoleArn::parse);
    let kind = ui.kind.get().map(IdentityType::parse);
    let is_assumed_role = kind == Some(IdentityType::AssumedRole) || assumed.is_some();

    let (principal, session) = if token_call.is_some() {
        (
            owned(rec.request_parameters.role_arn.get()),
            Some(ANY_SESSION.to_owned()),
        )
    } else {
        // A federated user's session belongs to the federated user (`arn:…:sts::A:federated-user/NAME`);
        // its `sessionIssuer` is the broker that called GetFederationToken, which two brokers can share.
        let federated = ui.arn.get().filter(|a| a.contains(":federated-user/"));
        let principal = federated
            .map(str::to_owned)
            .or_else(|| ctx.session_issuer.arn.get().map(str::to_owned))
            .or_else(|| assumed.as_ref().map(AssumedRoleArn::role_arn))
            .or_else(|| owned(ui.arn.get()));
        let session = if is_assumed_role {
            ui.principal_id
                .get()
                .and_then(|p| p.split_once(':'))
                .map(|(_, s)| s.to_owned())
                .or_else(|| assumed.as_ref().map(|a| a.session.to_owned()))
        } else if kind == Some(IdentityType::FederatedUser) {
            ui.arn
                .get()
                .and_then(|a| a.split_once(":federated-user/"))
                .map(|(_, n)| n.to_owned())
                .or_else(|| {
                    ui.principal_id
                        .get()
                        .and_then(|p| p.split_once(':'))
                        .map(|(_, s)| s.to_owned())
                })
        } else {
            None
        };
        (principal, session.filter(|s| !s.is_empty()))
    };

    let account = rec
        .recipient_account_id
        .get()
        .or(env.account.as_deref())
        .or(ui.account_id.get())
        .or_else(|| principal.as_deref().and_then(arn_account))
        .map(str::to_owned);
    let event_source = rec.event_source.get().unwrap_or("unknown");
    Failure {
        event_id: owned(rec.event_id.get()),
        time,
        account,
        principal,
        session,
        access_key_id: owned(ui.access_key_id.get()),
        creation_date: ctx.attributes.creation_date.get().and_then(parse_time),
        error_code: rec.error_code.get().unwrap_or("(message)").to_owned(),
        event_name: format!(
            "{}:{}",
            service_prefix(event_source),
            rec.event_name.get().unwrap_or("unknown")
        ),
        source_ip: owned(rec.source_ip_address.get()),
        client: rec.user_agent.get().and_then(client_of),
        token_call,
        requested_session: token_call
            .and(rec.request_parameters.role_session_name.get())
            .map(str::to_owned),
        hints: IdentityHints {
            identity_type: kind,
            ec2_role_delivery: ctx.ec2_role_delivery.get().is_some(),
            web_identity: ctx.web_id_federation_data.federated_provider.get().is_some(),
        },
    }
}

fn issuance(rec: &Record, call: StsCall, time: Epoch) -> Option<Issuance> {
    let resp = &rec.response_elements;
    let req = &rec.request_parameters;
    let access_key_id = resp.credentials.access_key_id.get()?.to_owned();
    let issued_arn = resp.assumed_role_user.arn.get().and_then(AssumedRoleArn::parse);
    let (principal, session) = match call {
        StsCall::AssumeRole | StsCall::AssumeRoleWithSaml | StsCall::AssumeRoleWithWebIdentity => (
            owned(req.role_arn.get()).or_else(|| issued_arn.as_ref().map(AssumedRoleArn::role_arn)),
            owned(req.role_session_name.get())
                .or_else(|| {
                    resp.assumed_role_user
                        .assumed_role_id
                        .get()
                        .and_then(|id| id.split_once(':'))
                        .map(|(_, s)| s.to_owned())
                })
                .or_else(|| issued_arn.as_ref().map(|a| a.session.to_owned())),
        ),
        StsCall::GetSessionToken => (owned(rec.user_identity.arn.get()), None),
        StsCall::GetFederationToken => (
            owned(resp.federated_user.arn.get()),
            owned(req.name.get()).or_else(|| {
                resp.federated_user
                    .arn
                    .get()
                    .and_then(|a| a.split_once(":federated-user/"))
                    .map(|(_, n)| n.to_owned())
            }),
        ),
    };
    let account = principal
        .as_deref()
        .and_then(arn_account)
        .or(rec.recipient_account_id.get())
        .or(rec.user_identity.account_id.get())
        .map(str::to_owned);
    let duration_seconds = req
        .duration_seconds
        .get()
        .and_then(|d| d.trim().parse::<f64>().ok())
        .filter(|d| d.is_finite() && *d > 0.0 && *d < 1e9)
        .map(|d| d.round() as u64);
    Some(Issuance {
        access_key_id,
        account,
        principal,
        session,
        issued_at: time,
        duration_seconds,
        expiration: resp.credentials.expiration.get().and_then(parse_time),
        call,
        chained: call == StsCall::AssumeRole
            && rec.user_identity.kind.get().map(IdentityType::parse) == Some(IdentityType::AssumedRole),
        for_container: [rec.user_identity.invoked_by.get(), rec.source_ip_address.get()]
            .into_iter()
            .flatten()
            .any(|who| CONTAINER_SERVICES.contains(&who)),
    })
}

/// The services that issue sessions for containers and serve them from the container credential
/// endpoint (docs/sts.md, "Container credentials").
const CONTAINER_SERVICES: [&str; 2] = ["ecs-tasks.amazonaws.com", "pods.eks.amazonaws.com"];

#[cfg(test)]
mod tests {
    use super::*;

    fn record(json: &str) -> Record {
        serde_json::from_str(json).unwrap()
    }

    fn observe(json: &str) -> Observation {
        classify(&record(json), &EnvelopeContext::default())
    }

    const FAILING_ROLE: &str = r#"{"eventTime":"2026-11-02T09:00:14Z","eventSource":"s3.amazonaws.com",
        "eventName":"ListBuckets","errorCode":"ExpiredToken","eventID":"e1","recipientAccountId":"123456789012",
        "userAgent":"[Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux Botocore/1.34.0]","sourceIPAddress":"10.1.2.3",
        "userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:nightly-etl",
          "arn":"arn:aws:sts::123456789012:assumed-role/etl-pipeline-role/nightly-etl","accessKeyId":"ASIAEXAMPLE1",
          "sessionContext":{"sessionIssuer":{"type":"Role","arn":"arn:aws:iam::123456789012:role/jobs/etl-pipeline-role"},
            "attributes":{"creationDate":"2026-11-02T08:00:00Z","mfaAuthenticated":"false"}}}}"#;

    #[test]
    fn expiry_family_is_recognised_by_code_or_message() {
        for code in [
            "ExpiredToken",
            "ExpiredTokenException",
            "RequestExpired",
            "S3ExpiredTokenException",
        ] {
            assert!(is_expiry(Some(code), None), "{code}");
        }
        assert!(is_expiry(
            Some("InvalidToken"),
            Some("The provided token has expired.")
        ));
        assert!(is_expiry(
            None,
            Some("The security token included in the request is EXPIRED")
        ));
    }

    #[test]
    fn look_alikes_are_not_expiry() {
        for code in [
            "InvalidClientTokenId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "AccessDeniedException",
            "UnrecognizedClientException",
            "ThrottlingException",
            "Throttling",
            "TokenRefreshRequired",
        ] {
            assert!(!is_expiry(Some(code), Some("Access denied")), "{code}");
        }
        assert!(!is_expiry(
            Some("InvalidClientTokenId"),
            Some("The security token included in the request is expired")
        ));
        assert!(!is_expiry(None, None));
    }

    #[test]
    fn a_failing_assumed_role_call_names_role_session_and_key() {
        let Observation::Failure(f) = observe(FAILING_ROLE) else {
            panic!("not a failure")
        };
        assert_eq!(
            f.principal.as_deref(),
            Some("arn:aws:iam::123456789012:role/jobs/etl-pipeline-role")
        );
        assert_eq!(f.session.as_deref(), Some("nightly-etl"));
        assert_eq!(f.access_key_id.as_deref(), Some("ASIAEXAMPLE1"));
        assert_eq!(f.account.as_deref(), Some("123456789012"));
        assert_eq!(f.creation_date, parse_time("2026-11-02T08:00:00Z"));
        assert_eq!(f.event_name, "s3:ListBuckets");
        assert_eq!(f.client, Some(Client::Boto3));
        assert_eq!(f.token_call, None);
    }

    #[test]
    fn without_session_issuer_the_role_comes_from_the_assumed_role_arn() {
        let rec = FAILING_ROLE.replace(r#""sessionIssuer":{"type":"Role","arn":"arn:aws:iam::123456789012:role/jobs/etl-pipeline-role"},"#, "")
            .replace(r#""recipientAccountId":"123456789012","#, "");
        let env = EnvelopeContext {
            account: Some("999999999999".into()),
            ..Default::default()
        };
        let Observation::Failure(f) = classify(&record(&rec), &env) else {
            panic!()
        };
        assert_eq!(
            f.principal.as_deref(),
            Some("arn:aws:iam::123456789012:role/etl-pipeline-role")
        );
        assert_eq!(
            f.account.as_deref(),
            Some("999999999999"),
            "the envelope account fills a missing recipient"
        );
    }

    #[test]
    fn a_failed_web_identity_call_is_keyed_by_its_requested_role() {
        let Observation::Failure(f) = observe(
            r#"{"eventTime":"2026-11-02T09:00:00Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRoleWithWebIdentity",
            "errorCode":"ExpiredTokenException","userIdentity":{"type":"WebIdentityUser","userName":"system:serviceaccount:a:b"},
            "requestParameters":{"roleArn":"arn:aws:iam::123456789012:role/irsa","roleSessionName":"pod-1"}}"#,
        ) else {
            panic!()
        };
        assert_eq!(f.token_call, Some(StsCall::AssumeRoleWithWebIdentity));
        assert_eq!(
            f.principal.as_deref(),
            Some("arn:aws:iam::123456789012:role/irsa")
        );
        // The name is the caller's choice: listed, not a group of its own (docs/rules.md).
        assert_eq!(f.session.as_deref(), Some(ANY_SESSION));
        assert_eq!(f.requested_session.as_deref(), Some("pod-1"));
    }

    #[test]
    fn an_assume_role_response_is_an_issuance() {
        let Observation::Issuance(i) = observe(
            r#"{"eventTime":"2026-11-02T08:00:00Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole",
            "userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::123456789012:assumed-role/base/x"},
            "requestParameters":{"roleArn":"arn:aws:iam::123456789012:role/target","roleSessionName":"s","durationSeconds":"900"},
            "responseElements":{"credentials":{"accessKeyId":"ASIAEXAMPLE2","expiration":"Nov 2, 2026, 8:15:00 AM",
              "sessionToken":"HIDDEN_DUE_TO_SECURITY_REASONS"}}}"#,
        ) else {
            panic!()
        };
        assert_eq!(i.access_key_id, "ASIAEXAMPLE2");
        assert_eq!(
            i.principal.as_deref(),
            Some("arn:aws:iam::123456789012:role/target")
        );
        assert_eq!(i.session.as_deref(), Some("s"));
        assert_eq!(i.duration_seconds, Some(900));
        assert_eq!(i.expiration, parse_time("2026-11-02T08:15:00Z"));
        assert!(i.chained);
    }

    #[test]
    fn a_failed_or_keyless_sts_call_is_not_an_issuance() {
        let base = r#"{"eventTime":"2026-11-02T08:00:00Z","eventSource":"sts.amazonaws.com","eventName":"AssumeRole",
            "requestParameters":{"roleArn":"arn:aws:iam::123456789012:role/target","roleSessionName":"s"}"#;
        assert_eq!(observe(&format!("{base}}}")), Observation::Other);
        assert_eq!(
            observe(&format!(r#"{base},"errorCode":"AccessDenied"}}"#)),
            Observation::Other
        );
        assert_eq!(
            observe(r#"{"eventName":"ListBuckets","eventTime":"2026-11-02T08:00:00Z"}"#),
            Observation::Other
        );
        assert_eq!(
            observe(r#"{"errorCode":"ExpiredToken"}"#),
            Observation::Other,
            "no time, no use"
        );
    }

    #[test]
    fn clients_are_recognised_in_order() {
        let cases = [
            (
                "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 exe/x86_64 prompt/off command/s3.ls",
                Some(Client::AwsCliV2),
            ),
            (
                "aws-cli/1.29.0 Python/3.11.4 Linux/6.1 botocore/1.31.0",
                Some(Client::AwsCliV1),
            ),
            (
                "Boto3/1.28.0 md/Botocore#1.31.0 ua/2.0 os/linux Botocore/1.31.0",
                Some(Client::Boto3),
            ),
            ("Botocore/1.31.0 Python/3.11", Some(Client::Botocore)),
            (
                "aws-sdk-java/2.20.0 Linux/5.10 OpenJDK_64-Bit_Server_VM/17",
                Some(Client::JavaV2),
            ),
            ("aws-sdk-java/1.12.500 Linux/5.10", Some(Client::JavaV1)),
            ("aws-sdk-go-v2/1.24.0 os/linux lang/go#1.21", Some(Client::GoV2)),
            ("aws-sdk-go/1.44.0 (go1.20; linux; amd64)", Some(Client::GoV1)),
            (
                "aws-sdk-js/3.454.0 ua/2.0 os/linux#5.10 lang/js md/nodejs#18.18.0",
                Some(Client::JsV3),
            ),
            (
                "aws-sdk-nodejs/2.1500.0 linux/v18 aws-sdk-js/2.1500.0",
                Some(Client::JsV2),
            ),
            ("aws-sdk-rust/1.3.0 os/linux lang/rust/1.95.0", Some(Client::Rust)),
            ("aws-sdk-dotnet-coreclr/3.7.0 .NET_Core/8.0", Some(Client::Dotnet)),
            ("aws-sdk-php/3.300.0 OS/Linux", Some(Client::Php)),
            ("aws-sdk-ruby3/3.190.0 ruby/3.2.2", Some(Client::Ruby)),
            (
                "AWSPowerShell.Common/4.1.400.0 .NET_Core/8.0",
                Some(Client::Powershell),
            ),
            (
                "APN/1.0 HashiCorp/1.0 Terraform/1.6.0 (+https://www.terraform.io) aws-sdk-go-v2/1.24.0",
                Some(Client::Terraform),
            ),
            ("signin.amazonaws.com", Some(Client::Console)),
            ("console.amazonaws.com", Some(Client::Console)),
            ("console.ec2.amazonaws.com", Some(Client::Console)),
            (
                "[S3Console/0.4, aws-internal/3 aws-sdk-java/1.12.750 Linux/5.10 OpenJDK_64-Bit_Server_VM/25.412]",
                Some(Client::Console),
            ),
            ("AWS Internal", Some(Client::Console)),
            ("[aws-cli/2.15.0 Python/3.11.6]", Some(Client::AwsCliV2)),
            ("curl/8.0", None),
            ("ec2.amazonaws.com", None),
            ("aws-internal/3 aws-sdk-java/1.12.750", Some(Client::JavaV1)),
        ];
        for (ua, want) in cases {
            assert_eq!(client_of(ua), want, "{ua}");
        }
    }

    #[test]
    fn arns_are_taken_apart() {
        let a =
            AssumedRoleArn::parse("arn:aws-us-gov:sts::123456789012:assumed-role/r/s@example.com").unwrap();
        assert_eq!(
            (a.partition, a.account, a.role, a.session),
            ("aws-us-gov", "123456789012", "r", "s@example.com")
        );
        assert_eq!(a.role_arn(), "arn:aws-us-gov:iam::123456789012:role/r");
        assert!(AssumedRoleArn::parse("arn:aws:iam::123456789012:user/alice").is_none());
        assert_eq!(
            role_name("arn:aws:iam::1:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_1"),
            Some("AWSReservedSSO_Admin_1")
        );
        assert_eq!(role_name("arn:aws:iam::1:user/alice"), None);
        assert_eq!(
            arn_account("arn:aws:iam::123456789012:user/alice"),
            Some("123456789012")
        );
    }
}

//! CloudTrail records of one history as JSON values: identities, issuing calls, API calls and their
//! failures, in the shapes of the bundled samples (which follow AWS's documented example records).

use serde_json::{Map, Value, json};

use crate::ids;
use crate::rng::{Rng, hash2, mix};
use crate::time::{iso, write_expiration};

/// The one account of a history (the documentation placeholder).
pub const ACCOUNT: &str = "123456789012";
/// The region of every record.
pub const REGION: &str = "us-east-1";

/// A role: its name, IAM path and unique id.
#[derive(Clone, Debug)]
pub(crate) struct Role {
    pub name: String,
    pub path: &'static str,
    pub id: String,
}

impl Role {
    /// `arn:aws:iam::A:role/PATH/NAME`.
    pub(crate) fn arn(&self) -> String {
        format!("arn:aws:iam::{ACCOUNT}:role/{}{}", self.path, self.name)
    }

    /// `arn:aws:sts::A:assumed-role/NAME/SESSION`.
    pub(crate) fn session_arn(&self, session: &str) -> String {
        format!("arn:aws:sts::{ACCOUNT}:assumed-role/{}/{session}", self.name)
    }
}

/// An IAM user.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub name: String,
    pub id: String,
}

impl User {
    pub(crate) fn arn(&self) -> String {
        format!("arn:aws:iam::{ACCOUNT}:user/{}", self.name)
    }
}

/// What the failing record's `userIdentity` of a role session carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Detail {
    /// The full identity with `sessionContext` and its `creationDate`.
    #[default]
    Full,
    /// `type`, `principalId`, `arn`, `accountId`, `accessKeyId`: no `sessionContext`, so no `creationDate`.
    Bare,
    /// Only `type` and `accessKeyId`: the session is known only through its issuing call.
    KeyOnly,
}

/// A role session as its calls name it.
#[derive(Clone, Debug)]
pub(crate) struct RoleSession {
    pub role: Role,
    pub session: String,
    pub key: String,
    pub created: i64,
    pub detail: Detail,
    /// `ec2RoleDelivery` (credentials served by the instance metadata service).
    pub ec2: bool,
    /// `webIdFederationData.federatedProvider` (issued by AssumeRoleWithWebIdentity).
    pub web_provider: Option<String>,
}

/// Who made a call.
#[derive(Clone, Debug)]
pub(crate) enum Who {
    Role(RoleSession),
    /// An IAM user with a long-term key.
    User {
        user: User,
        key: String,
    },
    /// An IAM user with a temporary key: a console sign-in or GetSessionToken session.
    UserSession {
        user: User,
        key: String,
        created: i64,
        console: bool,
    },
    /// An AWS service principal (`invokedBy`).
    Service(&'static str),
    /// A pod presenting its service-account token to AssumeRoleWithWebIdentity.
    WebIdentity {
        provider: String,
        subject: String,
    },
}

impl Who {
    fn identity(&self) -> Value {
        match self {
            Who::Role(s) => {
                let principal_id = format!("{}:{}", s.role.id, s.session);
                match s.detail {
                    Detail::KeyOnly => json!({"type": "AssumedRole", "accessKeyId": s.key}),
                    Detail::Bare => json!({
                        "type": "AssumedRole", "principalId": principal_id,
                        "arn": s.role.session_arn(&s.session), "accountId": ACCOUNT, "accessKeyId": s.key,
                    }),
                    Detail::Full => {
                        let web = match &s.web_provider {
                            Some(p) => json!({"federatedProvider": p, "attributes": {}}),
                            None => json!({}),
                        };
                        let mut ctx = json!({
                            "sessionIssuer": {
                                "type": "Role", "principalId": s.role.id, "arn": s.role.arn(),
                                "accountId": ACCOUNT, "userName": s.role.name,
                            },
                            "webIdFederationData": web,
                            "attributes": {"creationDate": iso(s.created), "mfaAuthenticated": "false"},
                        });
                        if s.ec2 {
                            ctx["ec2RoleDelivery"] = json!("2.0");
                        }
                        json!({
                            "type": "AssumedRole", "principalId": principal_id,
                            "arn": s.role.session_arn(&s.session), "accountId": ACCOUNT,
                            "accessKeyId": s.key, "sessionContext": ctx,
                        })
                    }
                }
            }
            Who::User { user, key } => json!({
                "type": "IAMUser", "principalId": user.id, "arn": user.arn(), "accountId": ACCOUNT,
                "accessKeyId": key, "userName": user.name,
            }),
            Who::UserSession {
                user,
                key,
                created,
                console,
            } => json!({
                "type": "IAMUser", "principalId": user.id, "arn": user.arn(), "accountId": ACCOUNT,
                "accessKeyId": key, "userName": user.name,
                "sessionContext": {
                    "sessionIssuer": {}, "webIdFederationData": {},
                    "attributes": {"creationDate": iso(*created), "mfaAuthenticated": if *console { "true" } else { "false" }},
                },
            }),
            Who::Service(by) => json!({"type": "AWSService", "invokedBy": by}),
            Who::WebIdentity { provider, subject } => json!({
                "type": "WebIdentityUser", "principalId": format!("{provider}:sts.amazonaws.com:{subject}"),
                "userName": subject, "identityProvider": provider,
            }),
        }
    }
}

/// A user agent: an SDK or CLI, a console, or a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Agent {
    Boto3,
    Cli2,
    Cli1,
    Java2,
    Go2,
    Js3,
    Rust,
    Dotnet,
    Terraform,
    /// The EC2 console's calls: no SDK named.
    Ec2Console,
    /// The S3 console's calls: an internal Java v1 SDK.
    S3Console,
    /// The SSM agent on an instance.
    Ssm,
    /// A service calling on its own (`ec2.amazonaws.com`, `ecs-tasks.amazonaws.com`).
    Service(&'static str),
}

/// The agents workloads in histories run.
pub(crate) const SDKS: [Agent; 9] = [
    Agent::Boto3,
    Agent::Cli2,
    Agent::Cli1,
    Agent::Java2,
    Agent::Go2,
    Agent::Js3,
    Agent::Rust,
    Agent::Dotnet,
    Agent::Terraform,
];

impl Agent {
    fn user_agent(self, svc: &str) -> String {
        let ua = match self {
            Agent::Boto3 => "Boto3/1.35.36 md/Botocore#1.35.36 ua/2.0 os/linux#5.10.227-219.884.amzn2.x86_64 \
                             md/arch#x86_64 lang/python#3.12.7 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.35.36"
                .to_owned(),
            Agent::Cli2 => format!(
                "aws-cli/2.18.10 md/awscrt#0.22.0 ua/2.0 os/linux#6.1.112-122.189.amzn2023.x86_64 md/arch#x86_64 \
                 lang/python#3.12.6 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/prompt#off md/command#{svc}"
            ),
            Agent::Cli1 => "aws-cli/1.33.4 md/Botocore#1.34.162 ua/2.0 os/linux#5.10.227-219.884.amzn2.x86_64 \
                            md/arch#x86_64 lang/python#3.9.20 md/pyimpl#CPython cfg/retry-mode#legacy botocore/1.34.162"
                .to_owned(),
            Agent::Java2 => "aws-sdk-java/2.28.21 Linux/5.10.227-219.884.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/21.0.5+11-LTS \
                             Java/21.0.5 vendor/Amazon.com_Inc. md/internal exec-env/AWS_ECS_FARGATE io/sync http/Apache"
                .to_owned(),
            Agent::Go2 => format!(
                "aws-sdk-go-v2/1.32.2 ua/2.1 os/linux lang/go#1.23.2 md/GOOS#linux md/GOARCH#amd64 api/{svc}#1.60.0 m/E,Z"
            ),
            Agent::Js3 => format!(
                "aws-sdk-js/3.675.0 ua/2.1 os/linux#5.10.227-219.884.amzn2.x86_64 lang/js md/nodejs#20.18.0 api/{svc}#3.675.0 m/E"
            ),
            Agent::Rust => format!("aws-sdk-rust/1.5.9 ua/2.1 api/{svc}/1.50.0 os/linux lang/rust/1.82.0 m/E"),
            Agent::Dotnet => "aws-sdk-dotnet-coreclr/3.7.400.36 aws-sdk-dotnet-core/3.7.400.36 .NET_Core/8.0.10 \
                              OS/Linux_5.10.227-219.884.amzn2.x86_64 ClientAsync"
                .to_owned(),
            Agent::Terraform => format!(
                "APN/1.0 HashiCorp/1.0 Terraform/1.9.8 (+https://www.terraform.io) terraform-provider-aws/5.72.1 \
                 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.32.2 ua/2.1 os/linux \
                 lang/go#1.23.2 md/GOOS#linux md/GOARCH#amd64 api/{svc}#1.180.0"
            ),
            Agent::Ec2Console => "console.ec2.amazonaws.com".to_owned(),
            Agent::S3Console => "[S3Console/0.4, aws-internal/3 aws-sdk-java/1.12.750 \
                                 Linux/5.10.223-190.873.amzn2int.x86_64 OpenJDK_64-Bit_Server_VM/25.412-b09 java/1.8.0_412 \
                                 vendor/Oracle_Corporation cfg/retry-mode/standard]"
                .to_owned(),
            Agent::Ssm => "amazon-ssm-agent/3.3.987.0".to_owned(),
            Agent::Service(s) => s.to_owned(),
        };
        // S3 writes the agent in brackets; the S3 console's already has them.
        if svc == "s3" && !ua.starts_with('[') && !matches!(self, Agent::Service(_)) {
            format!("[{ua}]")
        } else {
            ua
        }
    }
}

/// How a service answers a call made with an expired session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    /// XML/query services: `ExpiredToken`, "The security token included in the request is expired".
    Query,
    /// JSON services: `ExpiredTokenException`, same message.
    Json,
    /// S3: `ExpiredToken`, "The provided token has expired."
    S3,
    /// EC2: `RequestExpired`, "Request has expired."
    Ec2,
}

/// One API operation CloudTrail logs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Api {
    pub svc: &'static str,
    pub name: &'static str,
    pub read_only: bool,
    pub proto: Proto,
}

const fn api(svc: &'static str, name: &'static str, read_only: bool, proto: Proto) -> Api {
    Api {
        svc,
        name,
        read_only,
        proto,
    }
}

/// Calls workloads make with role credentials.
pub(crate) const WORKLOAD_APIS: [Api; 12] = [
    api("s3", "GetObject", true, Proto::S3),
    api("s3", "PutObject", false, Proto::S3),
    api("s3", "ListBuckets", true, Proto::S3),
    api("sts", "GetCallerIdentity", true, Proto::Query),
    api("dynamodb", "DescribeTable", true, Proto::Json),
    api("ssm", "GetParameter", true, Proto::Json),
    api("kms", "Decrypt", true, Proto::Json),
    api("secretsmanager", "GetSecretValue", true, Proto::Json),
    api("logs", "CreateLogStream", false, Proto::Json),
    api("lambda", "ListFunctions20150331", true, Proto::Json),
    api("cloudformation", "DescribeStacks", true, Proto::Query),
    api("sqs", "GetQueueUrl", true, Proto::Query),
];

/// What the EC2 console polls.
pub(crate) const EC2_CONSOLE_APIS: [Api; 4] = [
    api("ec2", "DescribeInstances", true, Proto::Ec2),
    api("ec2", "DescribeInstanceStatus", true, Proto::Ec2),
    api("ec2", "DescribeVolumes", true, Proto::Ec2),
    api("ec2", "DescribeSecurityGroups", true, Proto::Ec2),
];

/// What the S3 console calls.
pub(crate) const S3_CONSOLE_APIS: [Api; 3] = [
    api("s3", "ListBuckets", true, Proto::S3),
    api("s3", "GetBucketLocation", true, Proto::S3),
    api("s3", "GetBucketAcl", true, Proto::S3),
];

/// EC2 describe calls of an autoscaler or inventory job.
pub(crate) const EC2_APIS: [Api; 3] = [
    api("ec2", "DescribeInstances", true, Proto::Ec2),
    api("ec2", "DescribeSubnets", true, Proto::Ec2),
    api("ec2", "DescribeTags", true, Proto::Ec2),
];

fn source(svc: &str) -> String {
    match svc {
        "logs" => "logs.amazonaws.com".to_owned(),
        other => format!("{other}.amazonaws.com"),
    }
}

fn request_parameters(api: &Api, app: &str) -> Value {
    let bucket = format!("example-{app}-data");
    match (api.svc, api.name) {
        ("s3", "ListBuckets") => json!({"Host": format!("s3.{REGION}.amazonaws.com")}),
        ("s3", "GetObject" | "PutObject") => json!({
            "bucketName": bucket, "Host": format!("{bucket}.s3.{REGION}.amazonaws.com"), "key": format!("{app}/part-00001.parquet"),
        }),
        ("s3", _) => {
            json!({"bucketName": bucket, "Host": format!("{bucket}.s3.{REGION}.amazonaws.com"), "location": ""})
        }
        ("ec2", _) => json!({"instancesSet": {}, "filterSet": {}}),
        ("dynamodb", _) => json!({"tableName": format!("{app}-table")}),
        ("ssm", _) => json!({"name": format!("/{app}/prod/config"), "withDecryption": true}),
        ("kms", _) => json!({"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
        ("secretsmanager", _) => json!({"secretId": format!("{app}/prod/db")}),
        ("logs", _) => json!({"logGroupName": format!("/app/{app}"), "logStreamName": format!("{app}/main")}),
        ("cloudformation", _) => json!({"stackName": format!("{app}-prod")}),
        ("sqs", _) => json!({"queueName": format!("{app}-jobs")}),
        _ => Value::Null,
    }
}

/// Every mention of the history's account inside `v` becomes `account`.
fn relocate(v: &mut Value, account: &str) {
    match v {
        Value::String(s) if s.contains(ACCOUNT) => *s = s.replace(ACCOUNT, account),
        Value::Array(items) => items.iter_mut().for_each(|x| relocate(x, account)),
        Value::Object(m) => m.values_mut().for_each(|x| relocate(x, account)),
        _ => {}
    }
}

/// How an issuing call is made.
#[derive(Clone, Debug)]
pub(crate) enum IssueCall {
    AssumeRole,
    AssumeRoleWithWebIdentity { provider: String, subject: String },
    GetSessionToken,
}

/// One session an issuing call hands out.
#[derive(Clone, Debug)]
pub(crate) struct Issue {
    pub call: IssueCall,
    /// The role and session name (none for GetSessionToken).
    pub role: Option<(Role, String)>,
    pub key: String,
    /// `requestParameters.durationSeconds`, when the caller passed it.
    pub duration: Option<i64>,
    /// The session's real lifetime (for `expiration`).
    pub lease: i64,
    /// `expiration` this many seconds short of the lease (seen in the wild).
    pub expiry_short: i64,
}

/// Makes ids and records for one history; everything derives from its seed.
pub(crate) struct Writer {
    pub rng: Rng,
    seed: u64,
    counter: u64,
    pub records: Vec<Value>,
}

impl Writer {
    pub(crate) fn new(seed: u64) -> Self {
        Writer {
            rng: Rng::new(hash2(seed, 0x4157_0121)),
            seed,
            counter: 0,
            records: Vec::new(),
        }
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        hash2(self.seed, self.counter)
    }

    pub(crate) fn uuid(&mut self) -> String {
        let h = self.next();
        let mut buf = Vec::with_capacity(36);
        ids::write_uuid(&mut buf, h, mix(h));
        ids::ascii(&buf)
    }

    /// A fresh access key (`ASIA…` or `AKIA…`), 20 characters ending in `EXAMPLE` like the documentation's
    /// placeholders, so a history can become a sample as it is.
    pub(crate) fn key(&mut self, prefix: &[u8; 4]) -> String {
        let random = ids::ascii(&ids::access_key(prefix, self.next()));
        format!("{}EXAMPLE", &random[..13])
    }

    /// A role's or user's unique id (`AROA…`, `AIDA…`): 21 characters ending in `EXAMPLE`.
    pub(crate) fn unique_id(&mut self, prefix: &str) -> String {
        let random = ids::unique_id(prefix, self.next());
        format!("{}EXAMPLE", &random[..14])
    }

    pub(crate) fn hex(&mut self, n: usize) -> String {
        ids::hex(n, self.next())
    }

    pub(crate) fn role(&mut self, name: String, path: &'static str) -> Role {
        Role {
            name,
            path,
            id: self.unique_id("AROA"),
        }
    }

    pub(crate) fn user(&mut self, name: &str) -> User {
        User {
            name: name.to_owned(),
            id: self.unique_id("AIDA"),
        }
    }

    fn head(
        &mut self,
        t: i64,
        who: &Who,
        svc: &str,
        name: &str,
        agent: Agent,
        ip: &str,
    ) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("eventVersion".into(), json!("1.09"));
        m.insert("userIdentity".into(), who.identity());
        m.insert("eventTime".into(), json!(iso(t)));
        m.insert("eventSource".into(), json!(source(svc)));
        m.insert("eventName".into(), json!(name));
        m.insert("awsRegion".into(), json!(REGION));
        m.insert("sourceIPAddress".into(), json!(ip));
        m.insert("userAgent".into(), json!(agent.user_agent(svc)));
        m
    }

    fn tail(&mut self, m: &mut Map<String, Value>, read_only: bool, agent: Agent, svc: &str) {
        m.insert("requestID".into(), json!(self.uuid()));
        m.insert("eventID".into(), json!(self.uuid()));
        m.insert("readOnly".into(), json!(read_only));
        m.insert("eventType".into(), json!("AwsApiCall"));
        m.insert("managementEvent".into(), json!(true));
        m.insert("recipientAccountId".into(), json!(ACCOUNT));
        m.insert("eventCategory".into(), json!("Management"));
        if !matches!(agent, Agent::Service(_)) {
            m.insert(
                "tlsDetails".into(),
                json!({
                    "tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                    "clientProvidedHostHeader": format!("{svc}.{REGION}.amazonaws.com"),
                }),
            );
        }
    }

    /// An API call; `expired` makes it fail the way its service answers an expired session.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn call(
        &mut self,
        t: i64,
        who: &Who,
        agent: Agent,
        ip: &str,
        api: &Api,
        app: &str,
        expired: bool,
    ) -> usize {
        let mut m = self.head(t, who, api.svc, api.name, agent, ip);
        if expired {
            let (code, message) = match api.proto {
                Proto::Query => (
                    "ExpiredToken",
                    "The security token included in the request is expired",
                ),
                Proto::Json => (
                    "ExpiredTokenException",
                    "The security token included in the request is expired",
                ),
                Proto::S3 => ("ExpiredToken", "The provided token has expired."),
                Proto::Ec2 => ("RequestExpired", "Request has expired."),
            };
            m.insert("errorCode".into(), json!(code));
            m.insert("errorMessage".into(), json!(message));
        }
        m.insert("requestParameters".into(), request_parameters(api, app));
        m.insert("responseElements".into(), Value::Null);
        if matches!(who, Who::UserSession { console: true, .. }) {
            m.insert("sessionCredentialFromConsole".into(), json!("true"));
        }
        self.tail(&mut m, api.read_only, agent, api.svc);
        self.push(m)
    }

    /// An AssumeRoleWithWebIdentity presenting a stale service-account token.
    pub(crate) fn stale_token(
        &mut self,
        t: i64,
        who: &Who,
        role: &Role,
        session: &str,
        token_exp: i64,
    ) -> usize {
        let mut m = self.head(
            t,
            who,
            "sts",
            "AssumeRoleWithWebIdentity",
            Agent::Boto3,
            "203.0.113.88",
        );
        m.insert("errorCode".into(), json!("ExpiredTokenException"));
        m.insert(
            "errorMessage".into(),
            json!(format!(
                "Token expired: current date/time {t} must be before the expiration date/time{token_exp}"
            )),
        );
        m.insert(
            "requestParameters".into(),
            json!({"roleArn": role.arn(), "roleSessionName": session}),
        );
        m.insert("responseElements".into(), Value::Null);
        self.tail(&mut m, true, Agent::Boto3, "sts");
        self.push(m)
    }

    /// A successful issuing call.
    pub(crate) fn issue(&mut self, t: i64, caller: &Who, agent: Agent, ip: &str, is: &Issue) -> usize {
        let name = match is.call {
            IssueCall::AssumeRole => "AssumeRole",
            IssueCall::AssumeRoleWithWebIdentity { .. } => "AssumeRoleWithWebIdentity",
            IssueCall::GetSessionToken => "GetSessionToken",
        };
        let mut m = self.head(t, caller, "sts", name, agent, ip);
        let mut expiration = Vec::new();
        write_expiration(&mut expiration, t + is.lease - is.expiry_short);
        let credentials = json!({
            "accessKeyId": is.key, "sessionToken": "HIDDEN_DUE_TO_SECURITY_REASONS",
            "expiration": ids::ascii(&expiration),
        });
        let (request, response) = match &is.role {
            Some((role, session)) => {
                let mut req = json!({"roleArn": role.arn(), "roleSessionName": session});
                if let Some(d) = is.duration {
                    req["durationSeconds"] = json!(d);
                }
                let mut resp = json!({
                    "credentials": credentials,
                    "assumedRoleUser": {"assumedRoleId": format!("{}:{session}", role.id), "arn": role.session_arn(session)},
                });
                if let IssueCall::AssumeRoleWithWebIdentity { provider, subject } = &is.call {
                    resp["subjectFromWebIdentityToken"] = json!(subject);
                    resp["provider"] = json!(provider);
                    resp["audience"] = json!("sts.amazonaws.com");
                }
                (req, resp)
            }
            None => (
                is.duration.map_or(Value::Null, |d| json!({"durationSeconds": d})),
                json!({"credentials": credentials}),
            ),
        };
        m.insert("requestParameters".into(), request);
        m.insert("responseElements".into(), response);
        m.insert(
            "additionalEventData".into(),
            json!({"RequestDetails": {"awsServingRegion": REGION, "endpointType": "regional"}}),
        );
        self.tail(
            &mut m,
            !matches!(is.call, IssueCall::GetSessionToken),
            agent,
            "sts",
        );
        self.push(m)
    }

    /// A cross-account issuing call as CloudTrail logs it twice: record `i` becomes the caller's
    /// account's copy (its identity and recipient moved to `caller_account`), and a copy for the role's
    /// account is added, whose caller is only `AWSAccount`. Both carry one `sharedEventID`.
    pub(crate) fn log_in_both_accounts(&mut self, i: usize, caller_account: &str) -> usize {
        let shared = self.uuid();
        let mut target = self.records[i].clone();
        let principal_id = target["userIdentity"]["principalId"].clone();
        target["userIdentity"] =
            json!({"type": "AWSAccount", "principalId": principal_id, "accountId": caller_account});
        target["eventID"] = json!(self.uuid());
        target["sharedEventID"] = json!(shared);
        let source = &mut self.records[i];
        relocate(&mut source["userIdentity"], caller_account);
        source["recipientAccountId"] = json!(caller_account);
        source["sharedEventID"] = json!(shared);
        self.records.push(target);
        self.records.len() - 1
    }

    fn push(&mut self, m: Map<String, Value>) -> usize {
        self.records.push(Value::Object(m));
        self.records.len() - 1
    }
}

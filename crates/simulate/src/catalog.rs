//! What healthy traffic is made of: the API calls, the SDK user agents, the roles, users and services.

use std::io::Write as _;

/// How `requestParameters` of a call is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Req {
    Null,
    S3ListBuckets,
    /// Bucket subresource call: `{"bucketName", "Host", "<sub>": ""}`.
    S3Bucket(&'static str),
    S3Object,
    /// EC2 Describe*: `{"<set>": {}, "filterSet": {}}`.
    Ec2Set(&'static str),
    Ec2Tags,
    Ec2CreateTags,
    IamRole,
    LambdaFunction,
    DynamoTable,
    SsmParameter,
    SsmParameters,
    KmsDecrypt,
    KmsGenerateDataKey,
    Secret,
    LogStream,
    LogGroups,
    Metrics,
    SnsTopic,
    SqsQueue,
    EcsServices,
    EcsTasks,
    CfnStack,
    TargetHealth,
    KinesisStream,
}

/// One CloudTrail-logged API operation.
#[derive(Debug)]
pub(crate) struct Api {
    /// Service prefix, as in IAM actions and user agents' `api/<svc>`.
    pub svc: &'static str,
    pub source: &'static str,
    pub name: &'static str,
    /// IAM action name (differs from `name` for Lambda's versioned event names).
    pub action: &'static str,
    pub read_only: bool,
    /// JSON-protocol service: an expired session fails with `ExpiredTokenException`.
    pub json: bool,
    pub req: Req,
    /// S3 object-level data event (`managementEvent` false, `eventCategory` "Data").
    pub data: bool,
    pub version: &'static str,
}

const fn api(
    svc: &'static str,
    name: &'static str,
    read_only: bool,
    json: bool,
    req: Req,
    version: &'static str,
) -> Api {
    let source = match svc.as_bytes() {
        b"s3" => "s3.amazonaws.com",
        b"ec2" => "ec2.amazonaws.com",
        b"iam" => "iam.amazonaws.com",
        b"sts" => "sts.amazonaws.com",
        b"lambda" => "lambda.amazonaws.com",
        b"dynamodb" => "dynamodb.amazonaws.com",
        b"ssm" => "ssm.amazonaws.com",
        b"kms" => "kms.amazonaws.com",
        b"secretsmanager" => "secretsmanager.amazonaws.com",
        b"logs" => "logs.amazonaws.com",
        b"cloudwatch" => "monitoring.amazonaws.com",
        b"sns" => "sns.amazonaws.com",
        b"sqs" => "sqs.amazonaws.com",
        b"ecr" => "ecr.amazonaws.com",
        b"ecs" => "ecs.amazonaws.com",
        b"cloudformation" => "cloudformation.amazonaws.com",
        b"elasticloadbalancing" => "elasticloadbalancing.amazonaws.com",
        b"kinesis" => "kinesis.amazonaws.com",
        _ => "unknown.amazonaws.com",
    };
    Api {
        svc,
        source,
        name,
        action: name,
        read_only,
        json,
        req,
        data: false,
        version,
    }
}

const fn data(mut a: Api) -> Api {
    a.data = true;
    a
}

const fn action(mut a: Api, action: &'static str) -> Api {
    a.action = action;
    a
}

/// Every API the simulator emits. Index 0 must stay `sts:AssumeRole` (issuances).
pub(crate) static APIS: &[Api] = &[
    api("sts", "AssumeRole", true, false, Req::Null, "1.08"),
    api("sts", "GetCallerIdentity", true, false, Req::Null, "1.08"),
    api("s3", "ListBuckets", true, false, Req::S3ListBuckets, "1.09"),
    api(
        "s3",
        "GetBucketLocation",
        true,
        false,
        Req::S3Bucket("location"),
        "1.09",
    ),
    api("s3", "GetBucketAcl", true, false, Req::S3Bucket("acl"), "1.09"),
    api(
        "s3",
        "GetBucketPolicy",
        true,
        false,
        Req::S3Bucket("policy"),
        "1.09",
    ),
    api(
        "s3",
        "GetBucketVersioning",
        true,
        false,
        Req::S3Bucket("versioning"),
        "1.09",
    ),
    api(
        "s3",
        "GetBucketEncryption",
        true,
        false,
        Req::S3Bucket("encryption"),
        "1.09",
    ),
    data(api("s3", "GetObject", true, false, Req::S3Object, "1.09")),
    data(api("s3", "PutObject", false, false, Req::S3Object, "1.09")),
    data(api("s3", "HeadObject", true, false, Req::S3Object, "1.09")),
    api(
        "ec2",
        "DescribeInstances",
        true,
        false,
        Req::Ec2Set("instancesSet"),
        "1.09",
    ),
    api(
        "ec2",
        "DescribeVolumes",
        true,
        false,
        Req::Ec2Set("volumeSet"),
        "1.09",
    ),
    api(
        "ec2",
        "DescribeSecurityGroups",
        true,
        false,
        Req::Ec2Set("securityGroupSet"),
        "1.09",
    ),
    api(
        "ec2",
        "DescribeSubnets",
        true,
        false,
        Req::Ec2Set("subnetSet"),
        "1.09",
    ),
    api("ec2", "DescribeTags", true, false, Req::Ec2Tags, "1.09"),
    api("ec2", "CreateTags", false, false, Req::Ec2CreateTags, "1.09"),
    api("iam", "GetRole", true, false, Req::IamRole, "1.08"),
    api(
        "iam",
        "ListAttachedRolePolicies",
        true,
        false,
        Req::IamRole,
        "1.08",
    ),
    api("iam", "ListRoles", true, false, Req::Null, "1.08"),
    action(
        api(
            "lambda",
            "GetFunction20150331v2",
            true,
            true,
            Req::LambdaFunction,
            "1.08",
        ),
        "GetFunction",
    ),
    action(
        api("lambda", "ListFunctions20150331", true, true, Req::Null, "1.08"),
        "ListFunctions",
    ),
    api("dynamodb", "DescribeTable", true, true, Req::DynamoTable, "1.08"),
    api("dynamodb", "ListTables", true, true, Req::Null, "1.08"),
    api("ssm", "GetParameter", true, true, Req::SsmParameter, "1.08"),
    api("ssm", "GetParameters", true, true, Req::SsmParameters, "1.08"),
    api("kms", "Decrypt", true, true, Req::KmsDecrypt, "1.08"),
    api(
        "kms",
        "GenerateDataKey",
        true,
        true,
        Req::KmsGenerateDataKey,
        "1.08",
    ),
    api(
        "secretsmanager",
        "GetSecretValue",
        true,
        true,
        Req::Secret,
        "1.08",
    ),
    api("logs", "CreateLogStream", false, true, Req::LogStream, "1.08"),
    api("logs", "DescribeLogGroups", true, true, Req::LogGroups, "1.08"),
    api("cloudwatch", "ListMetrics", true, false, Req::Metrics, "1.08"),
    api("sns", "GetTopicAttributes", true, false, Req::SnsTopic, "1.08"),
    api("sqs", "GetQueueUrl", true, true, Req::SqsQueue, "1.08"),
    api("ecr", "GetAuthorizationToken", true, true, Req::Null, "1.08"),
    api("ecs", "DescribeServices", true, true, Req::EcsServices, "1.08"),
    api("ecs", "ListTasks", true, true, Req::EcsTasks, "1.08"),
    api(
        "cloudformation",
        "DescribeStacks",
        true,
        false,
        Req::CfnStack,
        "1.08",
    ),
    api(
        "elasticloadbalancing",
        "DescribeTargetHealth",
        true,
        false,
        Req::TargetHealth,
        "1.08",
    ),
    api(
        "kinesis",
        "DescribeStreamSummary",
        true,
        true,
        Req::KinesisStream,
        "1.08",
    ),
];

/// Index of `sts:AssumeRole` in [`APIS`].
pub(crate) const ASSUME_ROLE: u16 = 0;

/// Index in [`APIS`] of one operation.
pub(crate) fn api_id(svc: &str, name: &str) -> u16 {
    APIS.iter()
        .position(|a| a.svc == svc && a.name == name)
        .unwrap_or(1) as u16
}

/// Indices of every API of the given services.
pub(crate) fn api_ids(services: &[&str]) -> Vec<u16> {
    APIS.iter()
        .enumerate()
        .filter(|(i, a)| *i != ASSUME_ROLE as usize && services.contains(&a.svc))
        .map(|(i, _)| i as u16)
        .collect()
}

/// The SDK (or tool) behind a user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sdk {
    Boto3,
    Cli2,
    Cli1,
    Java2,
    Go2,
    Js3,
    Rust,
    Terraform,
}

impl Sdk {
    /// The `client` class docs/rules.md assigns to this user agent.
    pub(crate) fn client(self) -> &'static str {
        match self {
            Sdk::Boto3 => "boto3",
            Sdk::Cli2 => "aws-cli-v2",
            Sdk::Cli1 => "aws-cli-v1",
            Sdk::Java2 => "java-v2",
            Sdk::Go2 => "go-v2",
            Sdk::Js3 => "js-v3",
            Sdk::Rust => "rust",
            Sdk::Terraform => "terraform",
        }
    }

    /// Writes the user agent this SDK sends for `api` (version `ver` picks one of three releases).
    pub(crate) fn write_agent(self, buf: &mut Vec<u8>, ver: u8, api: &Api) {
        let v = usize::from(ver % 3);
        let svc = api.svc;
        let _ = match self {
            Sdk::Boto3 => {
                let b = ["1.35.36", "1.34.162", "1.35.54"][v];
                write!(
                    buf,
                    "Boto3/{b} md/Botocore#{b} ua/2.0 os/linux#5.10.227-219.884.amzn2.x86_64 md/arch#x86_64 \
                     lang/python#3.12.7 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/{b}"
                )
            }
            Sdk::Cli2 => {
                let c = ["2.18.10", "2.17.51", "2.19.1"][v];
                let _ = write!(
                    buf,
                    "aws-cli/{c} md/awscrt#0.22.0 ua/2.0 os/linux#6.1.112-122.189.amzn2023.x86_64 md/arch#x86_64 \
                     lang/python#3.12.6 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe \
                     md/distrib#amzn.2023 md/prompt#off md/command#{svc}."
                );
                write_kebab(buf, api.action);
                Ok(())
            }
            Sdk::Cli1 => {
                let b = ["1.35.36", "1.34.162", "1.35.54"][v];
                write!(
                    buf,
                    "aws-cli/1.33.{v}4 md/Botocore#{b} ua/2.0 os/linux#5.10.227-219.884.amzn2.x86_64 \
                     md/arch#x86_64 lang/python#3.9.20 md/pyimpl#CPython cfg/retry-mode#legacy botocore/{b}"
                )
            }
            Sdk::Java2 => {
                let j = ["2.28.21", "2.25.60", "2.29.6"][v];
                write!(
                    buf,
                    "aws-sdk-java/{j} Linux/5.10.227-219.884.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/21.0.5+11-LTS \
                     Java/21.0.5 vendor/Amazon.com_Inc. md/internal exec-env/AWS_ECS_FARGATE io/sync http/Apache \
                     cfg/retry-mode/legacy"
                )
            }
            Sdk::Go2 => {
                let g = ["1.32.2", "1.30.5", "1.32.6"][v];
                write!(
                    buf,
                    "aws-sdk-go-v2/{g} ua/2.1 os/linux lang/go#1.23.2 md/GOOS#linux md/GOARCH#amd64 \
                     api/{svc}#1.6{v}.0 m/E,Z"
                )
            }
            Sdk::Js3 => {
                let j = ["3.675.0", "3.654.0", "3.687.0"][v];
                write!(
                    buf,
                    "aws-sdk-js/{j} ua/2.1 os/linux#5.10.227-219.884.amzn2.x86_64 lang/js md/nodejs#20.18.0 \
                     api/{svc}#{j} m/E"
                )
            }
            Sdk::Rust => {
                let r = ["1.5.9", "1.5.5", "1.5.10"][v];
                write!(
                    buf,
                    "aws-sdk-rust/{r} ua/2.1 api/{svc}/1.5{v}.0 os/linux lang/rust/1.82.0 m/E"
                )
            }
            Sdk::Terraform => write!(
                buf,
                "APN/1.0 HashiCorp/1.0 Terraform/1.9.8 (+https://www.terraform.io) terraform-provider-aws/5.72.1 \
                 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.32.2 ua/2.1 os/linux \
                 lang/go#1.23.2 md/GOOS#linux md/GOARCH#amd64 api/{svc}#1.18{v}.0"
            ),
        };
    }
}

/// `DescribeInstances` → `describe-instances`, as the CLI names its commands.
fn write_kebab(buf: &mut Vec<u8>, name: &str) {
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_uppercase() {
            if i > 0 {
                buf.push(b'-');
            }
            buf.push(b.to_ascii_lowercase());
        } else {
            buf.push(b);
        }
    }
}

/// How a role's sessions are named.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Naming {
    /// Workload names, suffixed when repeated.
    Workload(&'static [&'static str]),
    /// EC2 instance ids (`i-0…`).
    Instance,
    /// ECS task ids (32 hex).
    Task,
    /// SSO user e-mails.
    Email,
    /// `botocore-session-<epoch>`.
    Botocore,
}

/// Who issues a healthy role's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Issuer {
    /// An IAM user (index into [`USERS`]) calls AssumeRole.
    User(usize),
    /// A session of the hub role calls AssumeRole (role chaining).
    Hub,
    /// An AWS service principal calls AssumeRole (no `durationSeconds`, 6 h lease).
    Service(&'static str),
    /// IAM Identity Center: the issuing call is not in this trail.
    Sso,
}

/// A role of the healthy account.
#[derive(Debug)]
pub(crate) struct RoleSpec {
    pub name: &'static str,
    pub path: &'static str,
    pub services: &'static [&'static str],
    pub naming: Naming,
    pub issuer: Issuer,
    pub sdks: &'static [Sdk],
    /// Resource-name stem (buckets, tables, functions…).
    pub app: &'static str,
}

const fn role(
    name: &'static str,
    path: &'static str,
    services: &'static [&'static str],
    naming: Naming,
    issuer: Issuer,
    sdks: &'static [Sdk],
    app: &'static str,
) -> RoleSpec {
    RoleSpec {
        name,
        path,
        services,
        naming,
        issuer,
        sdks,
        app,
    }
}

/// Index of the hub role in [`ROLES`] (its sessions make the chained AssumeRole calls).
pub(crate) const HUB_ROLE: usize = 0;

/// Healthy roles. Sessions cycle through them.
pub(crate) static ROLES: &[RoleSpec] = &[
    role(
        "ci-hub-role",
        "",
        &["sts", "s3", "cloudformation"],
        Naming::Workload(&["jenkins", "buildkite", "gitlab-runner"]),
        Issuer::User(0),
        &[Sdk::Cli2, Sdk::Boto3],
        "ci",
    ),
    role(
        "etl-runner",
        "service-role/",
        &["s3", "kms", "logs", "sts"],
        Naming::Workload(&["nightly-etl", "hourly-etl", "etl-backfill"]),
        Issuer::User(5),
        &[Sdk::Boto3],
        "etl",
    ),
    role(
        "web-app-prod",
        "",
        &["s3", "dynamodb", "ssm", "kms", "secretsmanager", "logs"],
        Naming::Task,
        Issuer::Service("ecs-tasks.amazonaws.com"),
        &[Sdk::Java2, Sdk::Js3],
        "webapp",
    ),
    role(
        "eks-node-group",
        "",
        &["ec2", "ecr", "logs", "cloudwatch"],
        Naming::Instance,
        Issuer::Service("ec2.amazonaws.com"),
        &[Sdk::Go2],
        "eks",
    ),
    role(
        "orders-api",
        "service-role/",
        &["dynamodb", "sqs", "logs", "kms", "sns"],
        Naming::Workload(&["orders-api", "orders-worker"]),
        Issuer::Service("lambda.amazonaws.com"),
        &[Sdk::Js3, Sdk::Rust],
        "orders",
    ),
    role(
        "monitoring-collector",
        "",
        &["cloudwatch", "ec2", "logs", "elasticloadbalancing"],
        Naming::Workload(&["collector", "prom-exporter"]),
        Issuer::Hub,
        &[Sdk::Go2],
        "metrics",
    ),
    role(
        "AWSReservedSSO_AdministratorAccess_4f1c2e9a7b3d5e60",
        "aws-reserved/sso.amazonaws.com/",
        &["ec2", "s3", "iam", "cloudformation", "lambda", "logs"],
        Naming::Email,
        Issuer::Sso,
        &[Sdk::Cli2],
        "admin",
    ),
    role(
        "AWSReservedSSO_ReadOnlyAccess_9e8d7c6b5a493827",
        "aws-reserved/sso.amazonaws.com/",
        &["ec2", "s3", "dynamodb", "cloudwatch", "ecs"],
        Naming::Email,
        Issuer::Sso,
        &[Sdk::Cli2, Sdk::Boto3],
        "readonly",
    ),
    role(
        "backup-agent",
        "",
        &["s3", "kms", "ec2"],
        Naming::Instance,
        Issuer::Service("ec2.amazonaws.com"),
        &[Sdk::Cli2, Sdk::Go2],
        "backup",
    ),
    role(
        "data-science-notebook",
        "service-role/",
        &["s3", "kms", "sts", "ssm"],
        Naming::Botocore,
        Issuer::User(3),
        &[Sdk::Boto3],
        "notebook",
    ),
    role(
        "terraform-deployer",
        "",
        &[
            "ec2",
            "iam",
            "s3",
            "dynamodb",
            "sts",
            "kms",
            "elasticloadbalancing",
            "cloudformation",
        ],
        Naming::Workload(&["terraform", "tf-plan", "tf-apply"]),
        Issuer::User(1),
        &[Sdk::Terraform],
        "infra",
    ),
    role(
        "payments-service",
        "",
        &["dynamodb", "kms", "secretsmanager", "sqs", "logs"],
        Naming::Task,
        Issuer::Service("ecs-tasks.amazonaws.com"),
        &[Sdk::Java2],
        "payments",
    ),
    role(
        "ingest-stream",
        "",
        &["kinesis", "s3", "dynamodb", "logs"],
        Naming::Workload(&["ingest", "ingest-replay"]),
        Issuer::Hub,
        &[Sdk::Java2, Sdk::Go2],
        "ingest",
    ),
    role(
        "cost-explorer-export",
        "",
        &["s3", "sts", "sns"],
        Naming::Workload(&["cur-export"]),
        Issuer::User(2),
        &[Sdk::Boto3],
        "cost",
    ),
    role(
        "release-pipeline",
        "",
        &[
            "ecr",
            "ecs",
            "elasticloadbalancing",
            "s3",
            "cloudformation",
            "sts",
        ],
        Naming::Workload(&["release", "rollback"]),
        Issuer::Hub,
        &[Sdk::Cli2, Sdk::Go2],
        "release",
    ),
    role(
        "image-resizer",
        "service-role/",
        &["s3", "logs", "kms"],
        Naming::Workload(&["image-resizer"]),
        Issuer::Service("lambda.amazonaws.com"),
        &[Sdk::Rust, Sdk::Js3],
        "images",
    ),
    role(
        "search-api",
        "",
        &["dynamodb", "ssm", "s3", "logs"],
        Naming::Task,
        Issuer::Service("ecs-tasks.amazonaws.com"),
        &[Sdk::Go2],
        "search",
    ),
    role(
        "bastion-host",
        "",
        &["ec2", "ssm", "s3"],
        Naming::Instance,
        Issuer::Service("ec2.amazonaws.com"),
        &[Sdk::Cli2],
        "bastion",
    ),
    role(
        "analytics-reader",
        "",
        &["s3", "kms", "sts", "dynamodb"],
        Naming::Botocore,
        Issuer::User(6),
        &[Sdk::Boto3, Sdk::Cli1],
        "analytics",
    ),
    role(
        "secrets-rotator",
        "service-role/",
        &["secretsmanager", "kms", "logs"],
        Naming::Workload(&["rotate-db-creds"]),
        Issuer::Service("lambda.amazonaws.com"),
        &[Sdk::Boto3],
        "rotator",
    ),
];

/// An IAM user with a long-term key.
#[derive(Debug)]
pub(crate) struct UserSpec {
    pub name: &'static str,
    pub services: &'static [&'static str],
    pub sdk: Sdk,
    pub app: &'static str,
}

/// IAM users. The first few also call AssumeRole for roles and incidents.
pub(crate) static USERS: &[UserSpec] = &[
    UserSpec {
        name: "ci-bot",
        services: &["s3", "ecr", "sts", "cloudformation"],
        sdk: Sdk::Cli2,
        app: "ci",
    },
    UserSpec {
        name: "terraform",
        services: &["ec2", "iam", "s3", "dynamodb", "sts"],
        sdk: Sdk::Terraform,
        app: "infra",
    },
    UserSpec {
        name: "billing-bot",
        services: &["s3", "sts"],
        sdk: Sdk::Boto3,
        app: "billing",
    },
    UserSpec {
        name: "alice.admin",
        services: &["iam", "ec2", "s3", "cloudwatch", "logs"],
        sdk: Sdk::Cli2,
        app: "admin",
    },
    UserSpec {
        name: "legacy-reporting",
        services: &["s3", "dynamodb", "sts"],
        sdk: Sdk::Cli1,
        app: "reports",
    },
    UserSpec {
        name: "svc-scheduler",
        services: &["sts", "s3", "sqs", "sns"],
        sdk: Sdk::Boto3,
        app: "scheduler",
    },
    UserSpec {
        name: "analytics-svc",
        services: &["s3", "kms", "sts"],
        sdk: Sdk::Java2,
        app: "analytics",
    },
    UserSpec {
        name: "monitoring-bot",
        services: &["cloudwatch", "ec2", "logs"],
        sdk: Sdk::Go2,
        app: "metrics",
    },
];

/// Calls AWS services make on the account's behalf (`userIdentity.type` AWSService).
pub(crate) static SERVICE_CALLS: &[(&str, &str, &str)] = &[
    ("cloudtrail.amazonaws.com", "s3", "GetBucketAcl"),
    ("config.amazonaws.com", "s3", "GetBucketAcl"),
    ("s3.amazonaws.com", "kms", "GenerateDataKey"),
    ("secretsmanager.amazonaws.com", "kms", "Decrypt"),
    ("autoscaling.amazonaws.com", "ec2", "DescribeInstances"),
    ("elasticloadbalancing.amazonaws.com", "ec2", "DescribeSubnets"),
];

/// Workloads injected incidents are built from: role stem, session stem, resource stem, services.
pub(crate) static INCIDENT_WORKLOADS: &[(&str, &str, &str, &[&str])] = &[
    ("etl-pipeline-role", "nightly-etl", "etl", &["s3", "kms", "sts"]),
    (
        "reporting-worker",
        "daily-report",
        "reports",
        &["s3", "dynamodb", "sts"],
    ),
    (
        "billing-export",
        "invoice-export",
        "billing",
        &["s3", "sns", "sts"],
    ),
    ("ml-training", "train-job", "ml", &["s3", "kms", "ssm"]),
    ("data-sync", "s3-sync", "sync", &["s3", "sts"]),
    (
        "metrics-collector",
        "collector",
        "metrics",
        &["cloudwatch", "logs", "sts"],
    ),
    ("search-indexer", "reindex", "search", &["dynamodb", "s3", "sqs"]),
    ("backup-runner", "snapshot", "backup", &["s3", "kms", "dynamodb"]),
    ("cost-reporter", "cur-export", "cost", &["s3", "sts", "lambda"]),
    ("log-shipper", "shipper", "logs", &["logs", "kinesis", "s3"]),
    (
        "queue-consumer",
        "consumer",
        "jobs",
        &["sqs", "dynamodb", "secretsmanager"],
    ),
    (
        "deploy-automation",
        "deployer",
        "deploy",
        &["cloudformation", "s3", "lambda", "iam"],
    ),
];

/// Owners of SSO sessions.
pub(crate) static EMAILS: &[&str] = &[
    "alice@example.com",
    "bob@example.com",
    "carol.ng@example.com",
    "dmitri@example.com",
    "erin.o@example.com",
    "farah@example.com",
    "gus@example.com",
    "hana.k@example.com",
];

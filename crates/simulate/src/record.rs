//! Formats one CloudTrail record as compact JSON straight into a byte buffer.
//!
//! Every value written is ASCII without quotes or backslashes by construction, so no escaping is needed.

use std::io::Write as _;

use crate::catalog::{Api, Req, Sdk};
use crate::ids;
use crate::rng::{Rng, hash2, mix};
use crate::time::{parts, write_expiration, write_iso};
use crate::world::{RoleIdent, User, World};

/// Who made a call.
pub(crate) enum Identity<'a> {
    /// An assumed-role session: its key and `creationDate`.
    Role {
        ident: &'a RoleIdent,
        key: &'a [u8],
        created: i64,
    },
    User(&'a User),
    /// An AWS service principal (`invokedBy`).
    Service(&'a str),
}

impl Identity<'_> {
    fn arn(&self) -> &str {
        match self {
            Identity::Role { ident, .. } => &ident.arn,
            Identity::User(u) => &u.arn,
            Identity::Service(s) => s,
        }
    }

    fn write(&self, buf: &mut Vec<u8>) {
        match self {
            Identity::Role { ident, key, created } => {
                buf.extend_from_slice(ident.head.as_bytes());
                buf.extend_from_slice(key);
                buf.extend_from_slice(ident.mid.as_bytes());
                write_iso(buf, *created);
                buf.extend_from_slice(ident.tail.as_bytes());
            }
            Identity::User(u) => buf.extend_from_slice(u.json.as_bytes()),
            Identity::Service(by) => {
                let _ = write!(buf, r#"{{"type":"AWSService","invokedBy":"{by}"}}"#);
            }
        }
    }
}

/// What sent the request: an SDK (with one of three versions) or a service.
#[derive(Clone, Copy)]
pub(crate) enum Agent<'a> {
    Sdk(Sdk, u8),
    Service(&'a str),
}

/// An error outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    Fixed(&'static str, &'static str),
    /// AccessDenied, with the message naming the caller and the action.
    Denied,
}

/// One non-issuing API call.
pub(crate) struct Call<'a> {
    pub time: i64,
    pub identity: Identity<'a>,
    pub agent: Agent<'a>,
    pub ip: &'a str,
    pub api: &'static Api,
    pub fault: Option<Fault>,
    /// Resource-name stem.
    pub app: &'a str,
    /// Unique per record; becomes `eventID`.
    pub event_id: u64,
}

/// One AssumeRole call that issues `key` for `role`.
pub(crate) struct Issue<'a> {
    pub time: i64,
    pub caller: Identity<'a>,
    pub agent: Agent<'a>,
    pub ip: &'a str,
    pub role: &'a RoleIdent,
    pub key: &'a [u8],
    pub duration: Option<i64>,
    pub expiration: i64,
    pub event_id: u64,
}

/// An S3 bucket name, `acme-<app>-<account>`, formatted in place.
#[derive(Clone, Copy)]
struct Bucket<'a>(&'a str, &'a str);

impl std::fmt::Display for Bucket<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "acme-{}-{}", self.0, self.1)
    }
}

fn put(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(s.as_bytes());
}

fn write_agent(buf: &mut Vec<u8>, agent: Agent<'_>, api: &Api) {
    match agent {
        Agent::Sdk(sdk, ver) if api.svc == "s3" => {
            buf.push(b'[');
            sdk.write_agent(buf, ver, api);
            buf.push(b']');
        }
        Agent::Sdk(sdk, ver) => sdk.write_agent(buf, ver, api),
        Agent::Service(s) => put(buf, s),
    }
}

fn write_head(buf: &mut Vec<u8>, w: &World, api: &Api, time: i64, identity: &Identity<'_>) {
    put(buf, r#"{"eventVersion":""#);
    put(buf, api.version);
    put(buf, r#"","userIdentity":"#);
    identity.write(buf);
    put(buf, r#","eventTime":""#);
    write_iso(buf, time);
    put(buf, r#"","eventSource":""#);
    put(buf, api.source);
    put(buf, r#"","eventName":""#);
    put(buf, api.name);
    put(buf, r#"","awsRegion":""#);
    put(buf, if api.svc == "iam" { "us-east-1" } else { &w.region });
}

fn write_ids(buf: &mut Vec<u8>, api: &Api, event_id: u64, rng: &mut Rng) {
    put(buf, r#""requestID":""#);
    if api.svc == "s3" {
        ids::write_s3_request_id(buf, rng.next_u64());
    } else {
        ids::write_uuid(buf, rng.next_u64(), rng.next_u64());
    }
    put(buf, r#"","eventID":""#);
    ids::write_uuid(buf, event_id, mix(event_id ^ 0x0E7E_4717));
    put(buf, r#"","readOnly":"#);
    put(buf, if api.read_only { "true," } else { "false," });
}

fn write_tls(buf: &mut Vec<u8>, w: &World, api: &Api, agent: Agent<'_>, bucket_host: Option<Bucket<'_>>) {
    let Agent::Sdk(sdk, _) = agent else { return };
    let (version, suite) = if sdk == Sdk::Java2 {
        ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")
    } else {
        ("TLSv1.3", "TLS_AES_128_GCM_SHA256")
    };
    let _ = write!(
        buf,
        r#","tlsDetails":{{"tlsVersion":"{version}","cipherSuite":"{suite}","clientProvidedHostHeader":""#
    );
    match (api.svc, bucket_host) {
        ("iam", _) => put(buf, "iam.amazonaws.com"),
        ("s3", Some(bucket)) => {
            let _ = write!(buf, "{bucket}.s3.{}.amazonaws.com", w.region);
        }
        _ => {
            let host = api.source.strip_suffix(".amazonaws.com").unwrap_or(api.svc);
            let _ = write!(buf, "{host}.{}.amazonaws.com", w.region);
        }
    }
    put(buf, r#""}"#);
}

fn write_key_arn(buf: &mut Vec<u8>, w: &World, app: &str) {
    let _ = write!(buf, "arn:aws:kms:{}:{}:key/", w.region, w.account);
    let h = hash2(
        w.seed,
        app.len() as u64 * 131 + app.bytes().map(u64::from).sum::<u64>(),
    );
    ids::write_uuid(buf, h, mix(h));
}

/// Writes one ordinary API call.
pub(crate) fn write_call(buf: &mut Vec<u8>, w: &World, c: &Call<'_>, rng: &mut Rng) {
    let api = c.api;
    let (account, region, app) = (w.account.as_str(), w.region.as_str(), c.app);
    let bucket = Bucket(app, account);
    let object = rng.below(100_000);
    let day = parts(c.time);
    write_head(buf, w, api, c.time, &c.identity);
    put(buf, r#"","sourceIPAddress":""#);
    put(buf, c.ip);
    put(buf, r#"","userAgent":""#);
    write_agent(buf, c.agent, api);
    put(buf, "\",");
    if let Some(fault) = c.fault {
        match fault {
            Fault::Fixed(code, message) => {
                let _ = write!(buf, r#""errorCode":"{code}","errorMessage":"{message}","#);
            }
            Fault::Denied if api.svc == "s3" => put(
                buf,
                r#""errorCode":"AccessDenied","errorMessage":"Access Denied","#,
            ),
            Fault::Denied => {
                let code = if api.json {
                    "AccessDeniedException"
                } else {
                    "AccessDenied"
                };
                let _ = write!(
                    buf,
                    r#""errorCode":"{code}","errorMessage":"User: {} is not authorized to perform: {}:{} because no identity-based policy allows the {}:{} action","#,
                    c.identity.arn(),
                    api.svc,
                    api.action,
                    api.svc,
                    api.action
                );
            }
        }
    }
    put(buf, r#""requestParameters":"#);
    let _ = match api.req {
        Req::Null => write!(buf, "null"),
        Req::S3ListBuckets => write!(buf, r#"{{"Host":"s3.{region}.amazonaws.com"}}"#),
        Req::S3Bucket(sub) => {
            write!(
                buf,
                r#"{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","{sub}":""}}"#
            )
        }
        Req::S3Object => write!(
            buf,
            r#"{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","key":"{app}/dt={:04}-{:02}-{:02}/part-{object:05}.parquet"}}"#,
            day.year, day.month, day.day
        ),
        Req::Ec2Set(set) => write!(buf, r#"{{"{set}":{{}},"filterSet":{{}}}}"#),
        Req::Ec2Tags => write!(
            buf,
            r#"{{"filterSet":{{"items":[{{"name":"resource-id","valueSet":{{"items":[{{"value":"i-0{:016x}"}}]}}}}]}}}}"#,
            object * 7919
        ),
        Req::Ec2CreateTags => write!(
            buf,
            r#"{{"resourcesSet":{{"items":[{{"resourceId":"i-0{:016x}"}}]}},"tagSet":{{"items":[{{"key":"team","value":"{app}"}}]}}}}"#,
            object * 7919
        ),
        Req::IamRole => write!(buf, r#"{{"roleName":"{app}-role"}}"#),
        Req::LambdaFunction => write!(buf, r#"{{"functionName":"{app}-handler"}}"#),
        Req::DynamoTable => write!(buf, r#"{{"tableName":"{app}-table"}}"#),
        Req::SsmParameter => write!(buf, r#"{{"name":"/{app}/prod/config","withDecryption":true}}"#),
        Req::SsmParameters => {
            write!(
                buf,
                r#"{{"names":["/{app}/prod/db-host","/{app}/prod/db-port"],"withDecryption":false}}"#
            )
        }
        Req::KmsDecrypt => write!(
            buf,
            r#"{{"encryptionAlgorithm":"SYMMETRIC_DEFAULT","encryptionContext":{{"aws:s3:arn":"arn:aws:s3:::{bucket}"}}}}"#
        ),
        Req::KmsGenerateDataKey => write!(buf, r#"{{"keyId":"alias/{app}","keySpec":"AES_256"}}"#),
        Req::Secret => write!(buf, r#"{{"secretId":"{app}/prod/db"}}"#),
        Req::LogStream => write!(
            buf,
            r#"{{"logGroupName":"/ecs/{app}","logStreamName":"{app}/web/{:016x}{:016x}"}}"#,
            mix(object),
            object
        ),
        Req::LogGroups => write!(buf, r#"{{"logGroupNamePrefix":"/ecs/{app}"}}"#),
        Req::Metrics => write!(buf, r#"{{"namespace":"AWS/EC2","metricName":"CPUUtilization"}}"#),
        Req::SnsTopic => write!(
            buf,
            r#"{{"topicArn":"arn:aws:sns:{region}:{account}:{app}-alerts"}}"#
        ),
        Req::SqsQueue => write!(buf, r#"{{"queueName":"{app}-jobs"}}"#),
        Req::EcsServices => write!(buf, r#"{{"cluster":"{app}-cluster","services":["{app}-web"]}}"#),
        Req::EcsTasks => write!(buf, r#"{{"cluster":"{app}-cluster","desiredStatus":"RUNNING"}}"#),
        Req::CfnStack => write!(buf, r#"{{"stackName":"{app}-prod"}}"#),
        Req::TargetHealth => write!(
            buf,
            r#"{{"targetGroupArn":"arn:aws:elasticloadbalancing:{region}:{account}:targetgroup/{app}-tg/{:016x}"}}"#,
            mix(app.len() as u64)
        ),
        Req::KinesisStream => write!(buf, r#"{{"streamName":"{app}-events"}}"#),
    };
    put(buf, r#","responseElements":"#);
    let _ = match (c.fault, api.name) {
        (None, "PutObject") => write!(buf, r#"{{"x-amz-server-side-encryption":"AES256"}}"#),
        (None, "CreateTags") => {
            put(buf, r#"{"requestId":""#);
            ids::write_uuid(buf, rng.next_u64(), rng.next_u64());
            write!(buf, r#"","_return":true}}"#)
        }
        _ => write!(buf, "null"),
    };
    put(buf, ",");
    if api.svc == "s3" {
        let size = 512 + rng.below(4 << 20);
        let (bytes_in, bytes_out) = match (c.fault, api.name) {
            (Some(_), _) => (0, 0),
            (None, "PutObject") => (size, 0),
            (None, "GetObject") => (0, size),
            _ => (0, 0),
        };
        put(
            buf,
            r#""additionalEventData":{"SignatureVersion":"SigV4","CipherSuite":"TLS_AES_128_GCM_SHA256","#,
        );
        let _ = write!(
            buf,
            r#""bytesTransferredIn":{bytes_in},"AuthenticationMethod":"AuthHeader","x-amz-id-2":""#
        );
        ids::write_alnum(buf, 56, rng.next_u64());
        let _ = write!(buf, r#"","bytesTransferredOut":{bytes_out}}},"#);
    }
    write_ids(buf, api, c.event_id, rng);
    match api.req {
        Req::S3Object => {
            let _ = write!(
                buf,
                r#""resources":[{{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::{bucket}/{app}/dt={:04}-{:02}-{:02}/part-{object:05}.parquet"}},{{"accountId":"{account}","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::{bucket}"}}],"#,
                day.year, day.month, day.day
            );
        }
        Req::S3Bucket(_) => {
            let _ = write!(
                buf,
                r#""resources":[{{"accountId":"{account}","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::{bucket}"}}],"#
            );
        }
        Req::KmsDecrypt | Req::KmsGenerateDataKey => {
            let _ = write!(
                buf,
                r#""resources":[{{"accountId":"{account}","type":"AWS::KMS::Key","ARN":""#
            );
            write_key_arn(buf, w, app);
            put(buf, r#""}],"#);
        }
        _ => {}
    }
    let _ = write!(
        buf,
        r#""eventType":"AwsApiCall","managementEvent":{},"recipientAccountId":"{account}","#,
        !api.data
    );
    if api.svc == "s3" && c.ip.starts_with("10.") {
        let _ = write!(
            buf,
            r#""vpcEndpointId":"vpce-0{:016x}","vpcEndpointAccountId":"{account}","#,
            mix(w.seed) >> 8
        );
    }
    put(
        buf,
        if api.data {
            r#""eventCategory":"Data""#
        } else {
            r#""eventCategory":"Management""#
        },
    );
    let bucket_host = matches!(api.req, Req::S3Bucket(_) | Req::S3Object).then_some(bucket);
    write_tls(buf, w, api, c.agent, bucket_host);
    buf.push(b'}');
}

/// Writes one successful `sts:AssumeRole` that issues `is.key`.
pub(crate) fn write_issue(buf: &mut Vec<u8>, w: &World, is: &Issue<'_>, rng: &mut Rng) {
    let api = &crate::catalog::APIS[crate::catalog::ASSUME_ROLE as usize];
    let account = w.account.as_str();
    let role = is.role;
    write_head(buf, w, api, is.time, &is.caller);
    put(buf, r#"","sourceIPAddress":""#);
    put(buf, is.ip);
    put(buf, r#"","userAgent":""#);
    write_agent(buf, is.agent, api);
    let _ = write!(
        buf,
        r#"","requestParameters":{{"roleArn":"{}","roleSessionName":"{}""#,
        role.role_arn, role.session
    );
    if let Some(d) = is.duration {
        let _ = write!(buf, r#","durationSeconds":{d}"#);
    }
    put(buf, r#"},"responseElements":{"credentials":{"accessKeyId":""#);
    buf.extend_from_slice(is.key);
    put(
        buf,
        r#"","sessionToken":"HIDDEN_DUE_TO_SECURITY_REASONS","expiration":""#,
    );
    write_expiration(buf, is.expiration);
    let _ = write!(
        buf,
        r#""}},"assumedRoleUser":{{"assumedRoleId":"{}:{}","arn":"{}"}}}},"#,
        role.role_id, role.session, role.arn
    );
    let _ = write!(
        buf,
        r#""additionalEventData":{{"RequestDetails":{{"awsServingRegion":"{}","endpointType":"regional"}}}},"#,
        w.region
    );
    write_ids(buf, api, is.event_id, rng);
    let _ = write!(
        buf,
        r#""resources":[{{"accountId":"{account}","type":"AWS::IAM::Role","ARN":"{}"}}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management""#,
        role.role_arn
    );
    write_tls(buf, w, api, is.agent, None);
    buf.push(b'}');
}

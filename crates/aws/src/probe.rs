//! Signed AWS calls without a service crate: the real drill's probes ([`PROBES`]), and the few read-only
//! calls `tokenwatch doctor` and `tokenwatch drill --real --stack` make to CloudFormation and CloudWatch
//! ([`Prober::query`]).
//!
//! Why not the SDK's service crates: one per probe service would be eleven more crates, EC2 and IAM among
//! the largest of the SDK, each minutes of build on a small machine, for one list call each. The
//! CloudFormation and CloudWatch crates would cost the same for `DescribeStacks` and `DescribeAlarms`,
//! whose query-protocol answers are a few XML elements. So here is one table of requests, the SDK's own
//! SigV4 signer (`aws-sigv4`) and HTTP connector (both built for the SDK anyway), and one reader of the
//! error code and message per protocol. Tests replay answers at the HTTP layer ([`Prober::with_connector`]).
//!
//! Endpoints are the regional ones (`<service>.<region>.amazonaws.com`; IAM's global one in its
//! partition), or the configured endpoint URL (`AWS_ENDPOINT_URL`) for every service, as the SDK does.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sts::config::Credentials;
use aws_sigv4::http_request::{PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_async::rt::sleep::TokioSleep;
use aws_smithy_async::time::{SharedTimeSource, SystemTimeSource, TimeSource};
use aws_smithy_http_client::Connector;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorSettings, SharedHttpConnector};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::http::Headers;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use tokenwatch_core::coverage::Answer;
use tokenwatch_core::ports::PortError;

/// How a service's requests and errors are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// AWS query: a form body; errors `<ErrorResponse><Error><Code>…`.
    Query,
    /// EC2 query: a form body; errors `<Response><Errors><Error><Code>…`.
    Ec2,
    /// AWS JSON 1.0 with this `X-Amz-Target`; errors `{"__type": "…#Code", "message": …}`.
    Json10(&'static str),
    /// AWS JSON 1.1 with this `X-Amz-Target`.
    Json11(&'static str),
    /// REST-JSON: the code in the `x-amzn-ErrorType` header, the message in the body.
    RestJson,
    /// REST-XML (S3): errors `<Error><Code>…`.
    RestXml,
}

/// One probe: the service's read-only call the drill makes while its session is valid and again after it
/// expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The name `--services` takes (`s3`, `logs`).
    pub key: &'static str,
    /// The service as people name it.
    pub service: &'static str,
    /// The call.
    pub call: &'static str,
    /// The IAM action the call needs (the drill role's policy grants exactly these); `None` for STS
    /// GetCallerIdentity, which needs none.
    pub action: Option<&'static str>,
    /// The CloudTrail `eventSource` of its records.
    pub event_source: &'static str,
    /// The endpoint prefix (`<prefix>.<region>.amazonaws.com`).
    endpoint: &'static str,
    /// The SigV4 signing name.
    signing_name: &'static str,
    /// Served from one endpoint per partition (IAM), recorded in the partition's first region.
    pub global: bool,
    method: &'static str,
    /// Path and query.
    path: &'static str,
    protocol: Protocol,
    body: &'static str,
}

#[allow(clippy::too_many_arguments)]
const fn probe(
    key: &'static str,
    service: &'static str,
    call: &'static str,
    action: Option<&'static str>,
    event_source: &'static str,
    endpoint: &'static str,
    protocol: Protocol,
    (method, path, body): (&'static str, &'static str, &'static str),
) -> Probe {
    Probe {
        key,
        service,
        call,
        action,
        event_source,
        endpoint,
        signing_name: endpoint,
        global: false,
        method,
        path,
        protocol,
        body,
    }
}

const fn form(body: &'static str) -> (&'static str, &'static str, &'static str) {
    ("POST", "/", body)
}

const fn get(path: &'static str) -> (&'static str, &'static str, &'static str) {
    ("GET", path, "")
}

/// The probe calls, one per service: list calls of names only (the smallest page each API allows), so
/// that the drill role reads no data. The order is the coverage table's.
pub const PROBES: [Probe; 11] = [
    probe(
        "sts",
        "STS",
        "GetCallerIdentity",
        None,
        "sts.amazonaws.com",
        "sts",
        Protocol::Query,
        form("Action=GetCallerIdentity&Version=2011-06-15"),
    ),
    probe(
        "s3",
        "S3",
        "ListBuckets",
        Some("s3:ListAllMyBuckets"),
        "s3.amazonaws.com",
        "s3",
        Protocol::RestXml,
        get("/?max-buckets=1"),
    ),
    probe(
        "ec2",
        "EC2",
        "DescribeRegions",
        Some("ec2:DescribeRegions"),
        "ec2.amazonaws.com",
        "ec2",
        Protocol::Ec2,
        form("Action=DescribeRegions&Version=2016-11-15"),
    ),
    probe(
        "dynamodb",
        "DynamoDB",
        "ListTables",
        Some("dynamodb:ListTables"),
        "dynamodb.amazonaws.com",
        "dynamodb",
        Protocol::Json10("DynamoDB_20120810.ListTables"),
        form(r#"{"Limit":1}"#),
    ),
    probe(
        "lambda",
        "Lambda",
        "ListFunctions",
        Some("lambda:ListFunctions"),
        "lambda.amazonaws.com",
        "lambda",
        Protocol::RestJson,
        get("/2015-03-31/functions/?MaxItems=1"),
    ),
    probe(
        "sqs",
        "SQS",
        "ListQueues",
        Some("sqs:ListQueues"),
        "sqs.amazonaws.com",
        "sqs",
        Protocol::Json10("AmazonSQS.ListQueues"),
        form(r#"{"MaxResults":1}"#),
    ),
    probe(
        "sns",
        "SNS",
        "ListTopics",
        Some("sns:ListTopics"),
        "sns.amazonaws.com",
        "sns",
        Protocol::Query,
        form("Action=ListTopics&Version=2010-03-31"),
    ),
    probe(
        "ssm",
        "SSM",
        "DescribeParameters",
        Some("ssm:DescribeParameters"),
        "ssm.amazonaws.com",
        "ssm",
        Protocol::Json11("AmazonSSM.DescribeParameters"),
        form(r#"{"MaxResults":1}"#),
    ),
    probe(
        "kms",
        "KMS",
        "ListAliases",
        Some("kms:ListAliases"),
        "kms.amazonaws.com",
        "kms",
        Protocol::Json11("TrentService.ListAliases"),
        form(r#"{"Limit":1}"#),
    ),
    probe(
        "logs",
        "CloudWatch Logs",
        "DescribeLogGroups",
        Some("logs:DescribeLogGroups"),
        "logs.amazonaws.com",
        "logs",
        Protocol::Json11("Logs_20140328.DescribeLogGroups"),
        form(r#"{"limit":1}"#),
    ),
    Probe {
        global: true,
        ..probe(
            "iam",
            "IAM",
            "ListAccountAliases",
            Some("iam:ListAccountAliases"),
            "iam.amazonaws.com",
            "iam",
            Protocol::Query,
            form("Action=ListAccountAliases&Version=2010-05-08&MaxItems=1"),
        )
    },
];

/// The probes `keys` names (every one when empty), in table order; an unknown name is an error naming
/// the known ones.
pub fn select(keys: &[String]) -> Result<Vec<&'static Probe>, String> {
    if let Some(bad) = keys.iter().find(|k| !PROBES.iter().any(|p| p.key == k.as_str())) {
        let known: Vec<&str> = PROBES.iter().map(|p| p.key).collect();
        return Err(format!(
            "unknown service '{bad}'; the probes are: {}",
            known.join(", ")
        ));
    }
    Ok(PROBES
        .iter()
        .filter(|p| keys.is_empty() || keys.iter().any(|k| k == p.key))
        .collect())
}

/// The DNS suffix and the global services' (IAM's) region of `region`'s partition.
fn partition(region: &str) -> (&'static str, &'static str, &'static str) {
    if region.starts_with("cn-") {
        (
            "amazonaws.com.cn",
            "cn-north-1",
            "iam.cn-north-1.amazonaws.com.cn",
        )
    } else if region.starts_with("us-gov-") {
        ("amazonaws.com", "us-gov-west-1", "iam.us-gov.amazonaws.com")
    } else {
        ("amazonaws.com", "us-east-1", "iam.amazonaws.com")
    }
}

/// The region where a global service's calls of `region`'s partition are signed and recorded (IAM's
/// calls are in CloudTrail's Event history of this region).
pub fn global_region(region: &str) -> &'static str {
    partition(region).1
}

/// A query-protocol service `tokenwatch` reads without an SDK crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryService {
    /// CloudFormation (`DescribeStacks`), API version 2010-05-15.
    CloudFormation,
    /// CloudWatch (`DescribeAlarms`), API version 2010-08-01.
    CloudWatch,
}

impl QueryService {
    fn endpoint(self) -> &'static str {
        match self {
            QueryService::CloudFormation => "cloudformation",
            QueryService::CloudWatch => "monitoring",
        }
    }

    fn version(self) -> &'static str {
        match self {
            QueryService::CloudFormation => "2010-05-15",
            QueryService::CloudWatch => "2010-08-01",
        }
    }
}

/// One request, before it is signed.
struct Call<'a> {
    endpoint: &'a str,
    signing_name: &'a str,
    global: bool,
    method: &'a str,
    path: &'a str,
    protocol: Protocol,
    body: String,
}

/// What came back.
struct Raw {
    status: u16,
    error_type: Option<String>,
    query_error: Option<String>,
    body: Vec<u8>,
}

/// Makes signed calls for one region.
#[derive(Clone, Debug)]
pub struct Prober {
    connector: SharedHttpConnector,
    region: String,
    endpoint_url: Option<String>,
    time: SharedTimeSource,
}

/// The `User-Agent` of every call, so that its CloudTrail records say who made them.
pub const USER_AGENT: &str = concat!("tokenwatch/", env!("CARGO_PKG_VERSION"));

impl Prober {
    /// Calls in `sdk`'s region (us-east-1 when it names none), through its endpoint URL if it has one,
    /// over the SDK's HTTPS connector (rustls on aws-lc), with connect and read timeouts.
    pub fn new(sdk: &SdkConfig) -> Self {
        let settings = HttpConnectorSettings::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(30))
            .build();
        let connector = Connector::builder()
            .connector_settings(settings)
            .sleep_impl(TokioSleep::new())
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .build();
        Prober {
            connector: SharedHttpConnector::new(connector),
            region: sdk
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".into()),
            endpoint_url: sdk.endpoint_url().map(str::to_owned),
            time: SharedTimeSource::new(SystemTimeSource::new()),
        }
    }

    /// Sends through `connector` instead (tests replay answers with it).
    pub fn with_connector(mut self, connector: impl HttpConnector + 'static) -> Self {
        self.connector = SharedHttpConnector::new(connector);
        self
    }

    /// Signs with the time `time` tells (tests pass a manual clock).
    pub fn with_time(mut self, time: impl TimeSource + 'static) -> Self {
        self.time = SharedTimeSource::new(time);
        self
    }

    /// The region the calls go to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Makes `probe`'s call with `credentials` and says what the service answered: its status, and for an
    /// error its code and message as its protocol writes them. Never fails: a call that got no answer is
    /// an answer without a status.
    pub async fn probe(&self, probe: &Probe, credentials: &Credentials) -> Answer {
        let call = Call {
            endpoint: probe.endpoint,
            signing_name: probe.signing_name,
            global: probe.global,
            method: probe.method,
            path: probe.path,
            protocol: probe.protocol,
            body: probe.body.to_owned(),
        };
        match self.send(&call, credentials).await {
            Ok(raw) if (200..300).contains(&raw.status) => Answer {
                status: Some(raw.status),
                code: None,
                message: None,
            },
            Ok(raw) => {
                let (code, message) = error_of(probe.protocol, &raw);
                Answer {
                    status: Some(raw.status),
                    code,
                    message,
                }
            }
            Err(reason) => Answer {
                status: None,
                code: None,
                message: Some(reason),
            },
        }
    }

    /// A query-protocol call of `service` (`action` with `params`), signed with `credentials`: the XML
    /// answer, or the service's error as a [`PortError`] (transient for throttling and 5xx).
    pub async fn query(
        &self,
        service: QueryService,
        action: &str,
        params: &[(&str, &str)],
        credentials: &Credentials,
    ) -> Result<String, PortError> {
        let mut body = format!("Action={}&Version={}", encode(action), service.version());
        for (k, v) in params {
            body.push_str(&format!("&{}={}", encode(k), encode(v)));
        }
        let call = Call {
            endpoint: service.endpoint(),
            signing_name: service.endpoint(),
            global: false,
            method: "POST",
            path: "/",
            protocol: Protocol::Query,
            body,
        };
        let operation = format!("{}:{action}", service.endpoint());
        let raw = self
            .send(&call, credentials)
            .await
            .map_err(|e| PortError::transient(format!("{operation} failed: {e}")))?;
        if (200..300).contains(&raw.status) {
            return String::from_utf8(raw.body)
                .map_err(|_| PortError::permanent(format!("{operation}: the answer is not UTF-8")));
        }
        let (code, message) = error_of(Protocol::Query, &raw);
        let code = code.unwrap_or_else(|| "unknown".into());
        let text = format!(
            "{operation} failed: {code} (HTTP {}): {}",
            raw.status,
            message.as_deref().unwrap_or("no message")
        );
        Err(
            if raw.status >= 500 || raw.status == 429 || code.starts_with("Throttl") {
                PortError::transient(text)
            } else {
                PortError::permanent(text)
            },
        )
    }

    async fn send(&self, call: &Call<'_>, credentials: &Credentials) -> Result<Raw, String> {
        let (suffix, global_region, global_host) = partition(&self.region);
        let (host, signing_region) = if call.global {
            (global_host.to_owned(), global_region)
        } else {
            (
                format!("{}.{}.{suffix}", call.endpoint, self.region),
                self.region.as_str(),
            )
        };
        let url = match &self.endpoint_url {
            Some(base) => format!("{}{}", base.trim_end_matches('/'), call.path),
            None => format!("https://{host}{}", call.path),
        };
        let mut headers: Vec<(&str, String)> = vec![("user-agent", USER_AGENT.to_owned())];
        match call.protocol {
            Protocol::Query | Protocol::Ec2 => headers.push((
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
            )),
            Protocol::Json10(target) | Protocol::Json11(target) => {
                let version = if matches!(call.protocol, Protocol::Json10(_)) {
                    "1.0"
                } else {
                    "1.1"
                };
                headers.push(("content-type", format!("application/x-amz-json-{version}")));
                headers.push(("x-amz-target", target.to_owned()));
            }
            Protocol::RestJson | Protocol::RestXml => {}
        }
        let mut settings = SigningSettings::default();
        if call.protocol == Protocol::RestXml {
            // S3 wants the payload's hash in x-amz-content-sha256.
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        }
        let identity: Identity = credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(signing_region)
            .name(call.signing_name)
            .time(self.time.now())
            .settings(settings)
            .build()
            .map_err(|e| format!("the request could not be signed: {e}"))?
            .into();
        let signable = SignableRequest::new(
            call.method,
            url.as_str(),
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::Bytes(call.body.as_bytes()),
        )
        .map_err(|e| format!("the request could not be signed: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("the request could not be signed: {e}"))?
            .into_parts();
        let mut request = HttpRequest::new(SdkBody::from(call.body.clone()));
        request
            .set_uri(url.as_str())
            .map_err(|e| format!("bad URL {url}: {e}"))?;
        request
            .set_method(call.method)
            .map_err(|e| format!("bad method: {e}"))?;
        for (k, v) in &headers {
            request.headers_mut().insert(*k, v.clone());
        }
        let (signed, _) = instructions.into_parts();
        for h in signed {
            request.headers_mut().insert(h.name(), h.value().to_owned());
        }
        let response = tokio::time::timeout(Duration::from_secs(60), self.connector.call(request))
            .await
            .map_err(|_| "no answer within 60 s".to_owned())?
            .map_err(|e| format!("{}", aws_sdk_sts::error::DisplayErrorContext(&e)))?;
        let status = response.status().as_u16();
        let header = |h: &Headers, name: &str| h.get(name).map(str::to_owned);
        let error_type = header(response.headers(), "x-amzn-errortype");
        let query_error = header(response.headers(), "x-amzn-query-error");
        let body = ByteStream::new(response.into_body())
            .collect()
            .await
            .map(|b| b.into_bytes().to_vec())
            .map_err(|e| format!("the answer could not be read: {e}"))?;
        Ok(Raw {
            status,
            error_type,
            query_error,
            body,
        })
    }
}

/// Percent-encodes a form value: everything but the unreserved characters (RFC 3986), as the query
/// protocol's form bodies take it.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The error code and message of an error answer, as `protocol` writes them.
fn error_of(protocol: Protocol, raw: &Raw) -> (Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(&raw.body);
    parse_error(
        protocol,
        raw.error_type.as_deref(),
        raw.query_error.as_deref(),
        &text,
    )
}

/// Reads an error answer's code and message: from the XML body (query, EC2, REST-XML), from
/// `x-amzn-query-error` (a JSON service that answers query-compatible codes), `__type` or `code` in the
/// JSON body, or the `x-amzn-ErrorType` header (REST-JSON). Prefixes such as `com.amazon.coral.service#`
/// and suffixes after `:` are cut off. Any part that cannot be read is `None`.
pub fn parse_error(
    protocol: Protocol,
    error_type: Option<&str>,
    query_error: Option<&str>,
    body: &str,
) -> (Option<String>, Option<String>) {
    let clean = |code: &str| -> Option<String> {
        let code = code.rsplit('#').next().unwrap_or(code);
        let code = code.split(':').next().unwrap_or(code).trim();
        (!code.is_empty()).then(|| code.to_owned())
    };
    match protocol {
        Protocol::Query | Protocol::Ec2 | Protocol::RestXml => {
            let Ok(doc) = roxmltree::Document::parse(body) else {
                return (None, None);
            };
            let first = |tag: &str| {
                doc.descendants()
                    .find(|n| n.has_tag_name(tag))
                    .and_then(|n| n.text())
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
            };
            (first("Code"), first("Message"))
        }
        Protocol::Json10(_) | Protocol::Json11(_) | Protocol::RestJson => {
            let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            let field = |names: &[&str]| {
                names
                    .iter()
                    .find_map(|n| json.get(*n).and_then(|v| v.as_str()))
                    .map(str::to_owned)
            };
            let code = query_error
                .and_then(|q| q.split(';').next())
                .and_then(clean)
                .or_else(|| field(&["__type", "code"]).as_deref().and_then(clean))
                .or_else(|| error_type.and_then(clean));
            (code, field(&["message", "Message", "errorMessage"]))
        }
    }
}

/// The stack's status and outputs, from CloudFormation `DescribeStacks`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stack {
    /// `StackStatus` (`CREATE_COMPLETE`, `UPDATE_ROLLBACK_COMPLETE`, ...).
    pub status: String,
    /// Output key → value.
    pub outputs: BTreeMap<String, String>,
    /// Parameter key → value.
    pub parameters: BTreeMap<String, String>,
}

/// Reads `DescribeStacks`' answer for one stack.
pub fn parse_stack(xml: &str) -> Result<Stack, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("DescribeStacks answered bad XML: {e}"))?;
    let stack = doc
        .descendants()
        .find(|n| n.has_tag_name("Stacks"))
        .and_then(|s| s.children().find(|n| n.has_tag_name("member")))
        .ok_or("DescribeStacks named no stack")?;
    let child_text = |node: roxmltree::Node, tag: &str| {
        node.children()
            .find(|n| n.has_tag_name(tag))
            .and_then(|n| n.text())
            .map(|t| t.trim().to_owned())
            .unwrap_or_default()
    };
    let pairs = |list: &str, key: &str, value: &str| -> BTreeMap<String, String> {
        stack
            .children()
            .filter(|n| n.has_tag_name(list))
            .flat_map(|l| l.children().filter(|n| n.has_tag_name("member")))
            .map(|m| (child_text(m, key), child_text(m, value)))
            .filter(|(k, _)| !k.is_empty())
            .collect()
    };
    Ok(Stack {
        status: child_text(stack, "StackStatus"),
        outputs: pairs("Outputs", "OutputKey", "OutputValue"),
        parameters: pairs("Parameters", "ParameterKey", "ParameterValue"),
    })
}

/// One CloudWatch alarm's name and state, from `DescribeAlarms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alarm {
    /// `AlarmName`.
    pub name: String,
    /// `StateValue`: `OK`, `ALARM` or `INSUFFICIENT_DATA`.
    pub state: String,
}

/// Reads `DescribeAlarms`' answer (metric and composite alarms) and its `NextToken`.
pub fn parse_alarms(xml: &str) -> Result<(Vec<Alarm>, Option<String>), String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("DescribeAlarms answered bad XML: {e}"))?;
    let text = |node: roxmltree::Node, tag: &str| {
        node.children()
            .find(|n| n.has_tag_name(tag))
            .and_then(|n| n.text())
            .map(|t| t.trim().to_owned())
    };
    let alarms = doc
        .descendants()
        .filter(|n| n.has_tag_name("MetricAlarms") || n.has_tag_name("CompositeAlarms"))
        .flat_map(|l| l.children().filter(|n| n.has_tag_name("member")))
        .filter_map(|m| {
            Some(Alarm {
                name: text(m, "AlarmName")?,
                state: text(m, "StateValue").unwrap_or_default(),
            })
        })
        .collect();
    let next = doc
        .descendants()
        .find(|n| n.has_tag_name("NextToken"))
        .and_then(|n| n.text())
        .map(str::to_owned)
        .filter(|t| !t.is_empty());
    Ok((alarms, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPIRED: &str = "The security token included in the request is expired";

    #[test]
    fn every_protocol_s_expired_answer_gives_its_code_and_message() {
        let query = format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
             <Code>ExpiredToken</Code><Message>{EXPIRED}</Message></Error><RequestId>r</RequestId></ErrorResponse>"
        );
        let ec2 = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>RequestExpired</Code>\
                   <Message>Request has expired.</Message></Error></Errors><RequestID>r</RequestID></Response>";
        let s3 = "<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message>\
                  <Token-0>FQoG</Token-0><RequestId>r</RequestId></Error>";
        let json =
            format!(r#"{{"__type":"com.amazon.coral.service#ExpiredTokenException","message":"{EXPIRED}"}}"#);
        /// (protocol, x-amzn-ErrorType, x-amzn-query-error, body, code, message).
        type Case<'a> = (
            Protocol,
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
            &'a str,
            &'a str,
        );
        let cases: [Case; 6] = [
            (Protocol::Query, None, None, &query, "ExpiredToken", EXPIRED),
            (
                Protocol::Ec2,
                None,
                None,
                ec2,
                "RequestExpired",
                "Request has expired.",
            ),
            (
                Protocol::RestXml,
                None,
                None,
                s3,
                "ExpiredToken",
                "The provided token has expired.",
            ),
            (
                Protocol::Json11("T"),
                None,
                None,
                &json,
                "ExpiredTokenException",
                EXPIRED,
            ),
            (
                Protocol::RestJson,
                Some("ExpiredTokenException:http://internal.amazon.com/coral/com.amazon.coral.service/"),
                None,
                r#"{"Type":"User","message":"The security token included in the request is expired"}"#,
                "ExpiredTokenException",
                EXPIRED,
            ),
            (
                Protocol::Json10("T"),
                None,
                Some("ExpiredToken;Sender"),
                r#"{"__type":"com.amazon.coral.service#ExpiredTokenException","message":"The security token included in the request is expired"}"#,
                "ExpiredToken",
                EXPIRED,
            ),
        ];
        for (protocol, error_type, query_error, body, code, message) in cases {
            assert_eq!(
                parse_error(protocol, error_type, query_error, body),
                (Some(code.to_owned()), Some(message.to_owned())),
                "{protocol:?}"
            );
        }
    }

    #[test]
    fn an_unreadable_error_gives_no_code_rather_than_a_wrong_one() {
        assert_eq!(parse_error(Protocol::RestXml, None, None, ""), (None, None));
        assert_eq!(
            parse_error(Protocol::Query, None, None, "<html>proxy</html>"),
            (None, None)
        );
        assert_eq!(
            parse_error(Protocol::Json10("T"), None, None, "not json"),
            (None, None)
        );
    }

    #[test]
    fn services_are_selected_by_name_in_table_order() {
        let all = select(&[]).unwrap();
        assert_eq!(all.len(), 11);
        let some = select(&["iam".into(), "s3".into()]).unwrap();
        assert_eq!(some.iter().map(|p| p.key).collect::<Vec<_>>(), ["s3", "iam"]);
        let err = select(&["s4".into()]).unwrap_err();
        assert!(err.contains("'s4'") && err.contains("logs"), "{err}");
        for p in PROBES {
            assert!(p.event_source.ends_with(".amazonaws.com"), "{}", p.key);
            assert_eq!(p.action.is_none(), p.key == "sts", "{}", p.key);
        }
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(encode("tokenwatch-1.x_~"), "tokenwatch-1.x_~");
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn global_calls_go_to_the_partition_s_endpoint() {
        assert_eq!(global_region("eu-west-1"), "us-east-1");
        assert_eq!(global_region("cn-northwest-1"), "cn-north-1");
        assert_eq!(partition("us-gov-east-1").2, "iam.us-gov.amazonaws.com");
    }

    #[test]
    fn describe_stacks_and_describe_alarms_answers_are_read() {
        let stacks = r#"<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">
          <DescribeStacksResult><Stacks><member><StackName>tokenwatch</StackName>
            <Parameters><member><ParameterKey>DrillRoleEnabled</ParameterKey><ParameterValue>true</ParameterValue></member></Parameters>
            <StackStatus>UPDATE_COMPLETE</StackStatus>
            <Outputs><member><OutputKey>DrillRoleArn</OutputKey><OutputValue>arn:aws:iam::1:role/d</OutputValue>
              <Description>x</Description></member>
              <member><OutputKey>StateTableName</OutputKey><OutputValue>t&amp;1</OutputValue></member></Outputs>
          </member></Stacks></DescribeStacksResult></DescribeStacksResponse>"#;
        let s = parse_stack(stacks).unwrap();
        assert_eq!(s.status, "UPDATE_COMPLETE");
        assert_eq!(s.outputs["StateTableName"], "t&1");
        assert_eq!(s.outputs.len(), 2);
        assert_eq!(s.parameters["DrillRoleEnabled"], "true");
        assert!(parse_stack("<DescribeStacksResponse/>").is_err());
        let alarms = r#"<DescribeAlarmsResponse><DescribeAlarmsResult><MetricAlarms>
          <member><AlarmName>tw-dead-letters</AlarmName><StateValue>ALARM</StateValue>
            <Dimensions><member><Name>QueueName</Name></member></Dimensions></member>
          <member><AlarmName>tw-detector-errors</AlarmName><StateValue>OK</StateValue></member>
          </MetricAlarms><CompositeAlarms/><NextToken>n2</NextToken></DescribeAlarmsResult></DescribeAlarmsResponse>"#;
        let (list, next) = parse_alarms(alarms).unwrap();
        assert_eq!(
            list,
            [
                Alarm {
                    name: "tw-dead-letters".into(),
                    state: "ALARM".into()
                },
                Alarm {
                    name: "tw-detector-errors".into(),
                    state: "OK".into()
                }
            ]
        );
        assert_eq!(next.as_deref(), Some("n2"));
    }
}

//! A forgiving model of the CloudTrail record: only the fields the engine reads, each optional.
//!
//! Real records omit fields, write `null`, write numbers and booleans as strings, and put objects where
//! strings are expected (docs/cloudtrail.md). Every leaf here is a [`Text`], which takes any JSON scalar
//! and ignores anything else; every nested object is read with [`lenient`], which turns a value of the
//! wrong type into the empty default. A record therefore fails to decode only if it is not JSON.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

/// A scalar field as text: strings as they are, numbers and booleans spelled out, and `null`,
/// empty strings, objects and arrays as absent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text(pub Option<String>);

impl Text {
    /// The value, if present and non-empty.
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text((!v.is_empty()).then(|| v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text((!v.is_empty()).then_some(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Text, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Text, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Text, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads an object field; anything that is not an object (null, a string, an array) becomes the default.
pub fn lenient<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de> + Default> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(T::default())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_none<E: de::Error>(self) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_unit<E: de::Error>(self) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
            Ok(T::default())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<T, E> {
            Ok(T::default())
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// One CloudTrail record (the `detail` of an EventBridge event, an element of a trail file's `Records`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct Record {
    pub event_time: Text,
    pub event_source: Text,
    pub event_name: Text,
    pub aws_region: Text,
    #[serde(rename = "sourceIPAddress")]
    pub source_ip_address: Text,
    pub user_agent: Text,
    pub error_code: Text,
    pub error_message: Text,
    #[serde(rename = "eventID")]
    pub event_id: Text,
    pub recipient_account_id: Text,
    #[serde(deserialize_with = "lenient")]
    pub user_identity: UserIdentity,
    #[serde(deserialize_with = "lenient")]
    pub request_parameters: RequestParameters,
    #[serde(deserialize_with = "lenient")]
    pub response_elements: ResponseElements,
    // An input object is read once; these fields are set when it wraps records instead of being one.
    /// EventBridge `detail`: the record this envelope carries, read by [`crate::envelope::open`] (kept
    /// raw so that a bare record, the common case, is parsed once and an envelope's record once more).
    pub detail: Option<Box<serde_json::value::RawValue>>,
    /// EventBridge `account`.
    pub account: Text,
    /// EventBridge `region`.
    pub region: Text,
    /// EventBridge `source` (`aws.sts`, or `tokenwatch.drill` for a drill).
    pub source: Text,
    /// EventBridge `id`: set by EventBridge, not by whoever put the event, and the same on each
    /// redelivery of one event (a drill's rate-limit claim is keyed on it).
    pub id: Text,
    /// SQS message `body` (a JSON string).
    pub body: Text,
    /// SNS notification `Message` (a JSON string), as delivered over HTTP or to SQS.
    #[serde(rename = "Message")]
    pub message: Text,
    /// SNS record as delivered to Lambda.
    #[serde(rename = "Sns", deserialize_with = "lenient")]
    pub sns: SnsPart,
    /// lookup-events `CloudTrailEvent` (a JSON string).
    #[serde(rename = "CloudTrailEvent")]
    pub cloudtrail_event: Text,
}

impl Record {
    /// The JSON text a wrapper carries in a string field (lookup-events, SQS, SNS), if any.
    pub fn carried_json(&self) -> Option<&str> {
        self.cloudtrail_event
            .get()
            .or(self.body.get())
            .or(self.sns.message.get())
            .or(self.message.get())
    }
}

/// `userIdentity`: an open set of shapes (AssumedRole, IAMUser, AWSService, IdentityCenterUser, …).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct UserIdentity {
    #[serde(rename = "type")]
    pub kind: Text,
    pub principal_id: Text,
    pub arn: Text,
    pub account_id: Text,
    pub access_key_id: Text,
    pub user_name: Text,
    pub invoked_by: Text,
    pub identity_provider: Text,
    #[serde(deserialize_with = "lenient")]
    pub session_context: SessionContext,
}

/// `userIdentity.sessionContext`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct SessionContext {
    #[serde(deserialize_with = "lenient")]
    pub session_issuer: SessionIssuer,
    #[serde(deserialize_with = "lenient")]
    pub attributes: SessionAttributes,
    #[serde(deserialize_with = "lenient")]
    pub web_id_federation_data: WebIdFederationData,
    pub ec2_role_delivery: Text,
    pub source_identity: Text,
}

/// `sessionContext.sessionIssuer`: the role (or user) that owns the session; often `{}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct SessionIssuer {
    #[serde(rename = "type")]
    pub kind: Text,
    pub principal_id: Text,
    pub arn: Text,
    pub account_id: Text,
    pub user_name: Text,
}

/// `sessionContext.attributes`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct SessionAttributes {
    pub creation_date: Text,
    pub mfa_authenticated: Text,
}

/// `sessionContext.webIdFederationData`; `{}` on most sessions.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct WebIdFederationData {
    pub federated_provider: Text,
}

/// The `requestParameters` of the STS calls the engine reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct RequestParameters {
    pub role_arn: Text,
    pub role_session_name: Text,
    pub duration_seconds: Text,
    /// GetFederationToken's federated user name.
    pub name: Text,
}

/// The `responseElements` of the STS issuing calls.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct ResponseElements {
    #[serde(deserialize_with = "lenient")]
    pub credentials: IssuedCredentials,
    #[serde(deserialize_with = "lenient")]
    pub assumed_role_user: IssuedUser,
    #[serde(deserialize_with = "lenient")]
    pub federated_user: IssuedUser,
}

/// `responseElements.credentials` (the secret parts are never read).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct IssuedCredentials {
    pub access_key_id: Text,
    pub expiration: Text,
}

/// `responseElements.assumedRoleUser` / `federatedUser`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[allow(missing_docs)]
pub struct IssuedUser {
    pub arn: Text,
    pub assumed_role_id: Text,
    pub federated_user_id: Text,
}

/// What an envelope around a record says, used where the record itself is silent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvelopeContext {
    /// The EventBridge `account`.
    pub account: Option<String>,
    /// The EventBridge `region`.
    pub region: Option<String>,
    /// The EventBridge `source`.
    pub source: Option<String>,
    /// The EventBridge `id`.
    pub id: Option<String>,
}

/// Reads a nested record (an EventBridge `detail`); a non-object becomes an empty record.
/// SNS as delivered to Lambda: `{"Sns": {"Message": "…"}}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SnsPart {
    /// The published message.
    #[serde(rename = "Message")]
    pub message: Text,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_of_any_type_become_text() {
        let r: RequestParameters = serde_json::from_str(
            r#"{"durationSeconds":"900","roleArn":7,"name":true,"roleSessionName":null}"#,
        )
        .unwrap();
        assert_eq!(r.duration_seconds.get(), Some("900"));
        assert_eq!(r.role_arn.get(), Some("7"));
        assert_eq!(r.name.get(), Some("true"));
        assert_eq!(r.role_session_name.get(), None);
    }

    #[test]
    fn objects_of_the_wrong_type_become_empty() {
        let r: Record = serde_json::from_str(
            r#"{"eventTime":"2026-11-02T09:00:14Z","userIdentity":"weird","requestParameters":[1,2],
                "responseElements":{"credentials":"HIDDEN_DUE_TO_SECURITY_REASONS"},"userAgent":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(r.event_time.get(), Some("2026-11-02T09:00:14Z"));
        assert!(r.user_identity.kind.get().is_none());
        assert!(r.response_elements.credentials.access_key_id.get().is_none());
        assert!(r.user_agent.get().is_none());
    }

    #[test]
    fn empty_session_issuer_and_web_identity_objects_are_accepted() {
        let r: Record = serde_json::from_str(
            r#"{"userIdentity":{"type":"IAMUser","accessKeyId":"","sessionContext":{"sessionIssuer":{},
                "webIdFederationData":{},"attributes":{"mfaAuthenticated":"false","creationDate":"20261102T080000Z"}}}}"#,
        )
        .unwrap();
        let ctx = &r.user_identity.session_context;
        assert!(ctx.session_issuer.arn.get().is_none());
        assert_eq!(ctx.attributes.creation_date.get(), Some("20261102T080000Z"));
        assert!(
            r.user_identity.access_key_id.get().is_none(),
            "empty strings are absent"
        );
    }
}

//! The words of the contract (docs/contract.md) as types: each serializes to exactly the string the report and alerts use.

use serde::Serialize;

macro_rules! spelled {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The exact string of the contract.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $name::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let all: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    format!("'{s}' is not one of: {}", all.join(", "))
                })
            }
        }
    };
}

spelled! {
    /// What the failures of a group say happened.
    Verdict {
        /// Credentials were cached past their lease and the workload keeps using them.
        StaleCache => "stale-cache",
        /// A refreshing client renewed a little late and recovered.
        RefreshRace => "refresh-race",
        /// A process slept holding a session and woke after it expired.
        PausedProcess => "paused-process",
        /// The session should still have been valid: a clock or a presigned URL is off.
        ClockSkew => "clock-skew",
        /// An expired OIDC token or SAML assertion was presented to STS.
        WebIdentityTokenExpired => "web-identity-token-expired",
        /// The age of the session cannot be measured.
        Unknown => "unknown",
        /// Nothing failed, but a session signed calls after its client's provider would have refreshed
        /// it: a copied credential that will fail on a longer run (docs/rules.md, "Near misses").
        NearMiss => "near-miss",
    }
}

spelled! {
    /// Where the failing session's credentials came from.
    CredentialSource {
        /// `AssumeRole` by a user or service.
        AssumeRole => "assume-role",
        /// `AssumeRole` by an assumed-role session: capped at one hour.
        RoleChaining => "role-chaining",
        /// `GetSessionToken`.
        SessionToken => "session-token",
        /// `GetFederationToken`.
        FederationToken => "federation-token",
        /// An IAM Identity Center permission set role.
        Sso => "sso",
        /// EC2 instance-profile credentials from IMDS.
        InstanceProfile => "instance-profile",
        /// ECS task-role or EKS Pod Identity credentials from the container credential endpoint.
        Container => "container",
        /// `AssumeRoleWithWebIdentity`.
        WebIdentity => "web-identity",
        /// `AssumeRoleWithSAML`.
        Saml => "saml",
        /// Nothing tells.
        Unknown => "unknown",
    }
}

spelled! {
    /// The client that made the failing calls, from its user agent.
    Client {
        #[allow(missing_docs)] Boto3 => "boto3",
        #[allow(missing_docs)] Botocore => "botocore",
        #[allow(missing_docs)] AwsCliV1 => "aws-cli-v1",
        #[allow(missing_docs)] AwsCliV2 => "aws-cli-v2",
        #[allow(missing_docs)] JavaV1 => "java-v1",
        #[allow(missing_docs)] JavaV2 => "java-v2",
        #[allow(missing_docs)] GoV1 => "go-v1",
        #[allow(missing_docs)] GoV2 => "go-v2",
        #[allow(missing_docs)] JsV2 => "js-v2",
        #[allow(missing_docs)] JsV3 => "js-v3",
        #[allow(missing_docs)] Rust => "rust",
        #[allow(missing_docs)] Dotnet => "dotnet",
        #[allow(missing_docs)] Php => "php",
        #[allow(missing_docs)] Ruby => "ruby",
        #[allow(missing_docs)] Powershell => "powershell",
        #[allow(missing_docs)] Terraform => "terraform",
        #[allow(missing_docs)] Console => "console",
    }
}

spelled! {
    /// How urgently someone should look; ordered from least to most.
    Severity {
        #[allow(missing_docs)] Info => "info",
        #[allow(missing_docs)] Low => "low",
        #[allow(missing_docs)] Medium => "medium",
        #[allow(missing_docs)] High => "high",
        #[allow(missing_docs)] Critical => "critical",
    }
}

spelled! {
    /// The STS calls that issue sessions.
    StsCall {
        #[allow(missing_docs)] AssumeRole => "AssumeRole",
        #[allow(missing_docs)] AssumeRoleWithSaml => "AssumeRoleWithSAML",
        #[allow(missing_docs)] AssumeRoleWithWebIdentity => "AssumeRoleWithWebIdentity",
        #[allow(missing_docs)] GetSessionToken => "GetSessionToken",
        #[allow(missing_docs)] GetFederationToken => "GetFederationToken",
    }
}

spelled! {
    /// Where a lease came from.
    LeaseSource {
        /// The issuing call's `durationSeconds`.
        DurationSeconds => "duration-seconds",
        /// The issuing call's `expiration − eventTime`.
        Expiration => "expiration",
        /// Role chaining caps sessions at one hour.
        RoleChainingCap => "role-chaining-cap",
        #[allow(missing_docs)] DefaultAssumeRole => "default-assume-role",
        #[allow(missing_docs)] DefaultRoleChaining => "default-role-chaining",
        #[allow(missing_docs)] DefaultSessionToken => "default-session-token",
        #[allow(missing_docs)] DefaultFederationToken => "default-federation-token",
        #[allow(missing_docs)] DefaultSso => "default-sso",
        #[allow(missing_docs)] DefaultInstanceProfile => "default-instance-profile",
        #[allow(missing_docs)] DefaultContainer => "default-container",
        #[allow(missing_docs)] DefaultWebIdentity => "default-web-identity",
        #[allow(missing_docs)] DefaultSaml => "default-saml",
        #[allow(missing_docs)] DefaultUnknown => "default-unknown",
    }
}

/// `userIdentity.type`: the documented values, and [`IdentityType::Other`] for any other (CloudTrail adds
/// types without notice; nothing branches on the ones it does not know).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum IdentityType {
    Root,
    IamUser,
    AssumedRole,
    Role,
    FederatedUser,
    Directory,
    AwsAccount,
    AwsService,
    SamlUser,
    WebIdentityUser,
    IdentityCenterUser,
    Unknown,
    /// A type this version does not know.
    Other,
}

impl IdentityType {
    const SPELLED: [(IdentityType, &'static str); 13] = [
        (IdentityType::Root, "Root"),
        (IdentityType::IamUser, "IAMUser"),
        (IdentityType::AssumedRole, "AssumedRole"),
        (IdentityType::Role, "Role"),
        (IdentityType::FederatedUser, "FederatedUser"),
        (IdentityType::Directory, "Directory"),
        (IdentityType::AwsAccount, "AWSAccount"),
        (IdentityType::AwsService, "AWSService"),
        (IdentityType::SamlUser, "SAMLUser"),
        (IdentityType::WebIdentityUser, "WebIdentityUser"),
        (IdentityType::IdentityCenterUser, "IdentityCenterUser"),
        (IdentityType::Unknown, "Unknown"),
        (IdentityType::Other, "Other"),
    ];

    /// The type CloudTrail spells `text`; [`IdentityType::Other`] for any other text.
    pub fn parse(text: &str) -> IdentityType {
        Self::SPELLED
            .iter()
            .find(|(_, s)| *s == text)
            .map_or(IdentityType::Other, |(t, _)| *t)
    }

    /// CloudTrail's spelling (`Other` for a type this version does not know).
    pub fn as_str(self) -> &'static str {
        Self::SPELLED
            .iter()
            .find(|(t, _)| *t == self)
            .map_or("Other", |(_, s)| s)
    }
}

impl Serialize for IdentityType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for IdentityType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(IdentityType::parse(&text))
    }
}

impl CredentialSource {
    /// The documented default lifetime of such a session, and the lease source naming it.
    pub fn default_lease(self) -> (u64, LeaseSource) {
        match self {
            CredentialSource::AssumeRole => (3600, LeaseSource::DefaultAssumeRole),
            CredentialSource::RoleChaining => (3600, LeaseSource::DefaultRoleChaining),
            CredentialSource::SessionToken => (43_200, LeaseSource::DefaultSessionToken),
            CredentialSource::FederationToken => (43_200, LeaseSource::DefaultFederationToken),
            CredentialSource::Sso => (3600, LeaseSource::DefaultSso),
            CredentialSource::InstanceProfile => (21_600, LeaseSource::DefaultInstanceProfile),
            // ECS: "The default expiration time for the generated IAM role credentials is 6 hours"
            // (docs/sts.md); EKS Pod Identity documents none, so the same is assumed.
            CredentialSource::Container => (21_600, LeaseSource::DefaultContainer),
            CredentialSource::WebIdentity => (3600, LeaseSource::DefaultWebIdentity),
            CredentialSource::Saml => (3600, LeaseSource::DefaultSaml),
            CredentialSource::Unknown => (3600, LeaseSource::DefaultUnknown),
        }
    }
}

impl LeaseSource {
    /// A documented default, not a fact of the session's own issuing call.
    pub fn is_default(self) -> bool {
        !matches!(
            self,
            LeaseSource::DurationSeconds | LeaseSource::Expiration | LeaseSource::RoleChainingCap
        )
    }
}

impl Severity {
    /// One step down, never below `info`.
    pub fn lower(self) -> Severity {
        match self {
            Severity::Critical => Severity::High,
            Severity::High => Severity::Medium,
            Severity::Medium => Severity::Low,
            Severity::Low | Severity::Info => Severity::Info,
        }
    }
}

impl StsCall {
    /// The STS call named `event_name`, if it is an issuing call.
    pub fn from_event_name(event_name: &str) -> Option<StsCall> {
        event_name.parse().ok()
    }

    /// Calls whose `ExpiredTokenException` is about the presented token, not an AWS session.
    pub fn presents_external_token(self) -> bool {
        matches!(
            self,
            StsCall::AssumeRoleWithSaml | StsCall::AssumeRoleWithWebIdentity
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_through_their_spec_strings() {
        for v in Verdict::ALL {
            assert_eq!(v.as_str().parse::<Verdict>().unwrap(), *v);
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        assert_eq!(Client::AwsCliV2.as_str(), "aws-cli-v2");
        assert_eq!(
            CredentialSource::InstanceProfile.default_lease(),
            (21_600, LeaseSource::DefaultInstanceProfile)
        );
        assert!("stale".parse::<Verdict>().unwrap_err().contains("stale-cache"));
    }

    #[test]
    fn identity_types_read_cloudtrail_spellings_and_keep_unknown_ones_apart() {
        assert_eq!(IdentityType::parse("IAMUser"), IdentityType::IamUser);
        assert_eq!(IdentityType::parse("AssumedRole").as_str(), "AssumedRole");
        assert_eq!(IdentityType::parse("SomethingNew"), IdentityType::Other);
        assert_eq!(
            IdentityType::parse("iamuser"),
            IdentityType::Other,
            "spellings are exact"
        );
        for (t, s) in IdentityType::SPELLED {
            assert_eq!(IdentityType::parse(s), t);
        }
    }

    #[test]
    fn severities_are_ordered_and_lower_stops_at_info() {
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Info);
        assert_eq!(Severity::Low.lower(), Severity::Info);
        assert_eq!(Severity::Info.lower(), Severity::Info);
    }
}

//! API keys: `sk_live_…` acts on live data, `sk_test_…` in the sandbox. The
//! prefix is the environment, so a key's text alone tells where it acts.

use rand::distributions::Alphanumeric;
use rand::Rng;

/// Where a key acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// Production data.
    Live,
    /// The sandbox: events and subscriptions with `sandbox: true`.
    Test,
}

impl Environment {
    /// The key prefix of this environment.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Environment::Live => "sk_live_",
            Environment::Test => "sk_test_",
        }
    }

    /// Whether this environment is the sandbox.
    pub fn is_sandbox(self) -> bool {
        self == Environment::Test
    }

    /// The environment a key's text claims, by its prefix.
    pub fn of_key(key: &str) -> Option<Self> {
        [Environment::Live, Environment::Test]
            .into_iter()
            .find(|env| key.starts_with(env.key_prefix()))
    }

    /// The environment's name in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [Environment::Live, Environment::Test]
            .into_iter()
            .find(|env| env.as_str() == text)
    }
}

/// The number of random characters after the prefix (≈ 238 bits).
pub const KEY_RANDOM_CHARS: usize = 40;

/// A fresh API key's text. Shown once to its owner, then only its hash is kept.
pub fn generate_api_key(env: Environment, rng: &mut impl Rng) -> String {
    let random: String = rng
        .sample_iter(&Alphanumeric)
        .take(KEY_RANDOM_CHARS)
        .map(char::from)
        .collect();
    format!("{}{random}", env.key_prefix())
}

/// What a dashboard user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything: change endpoints, see secrets, manage keys and the team.
    Admin,
    /// Read only, and never a secret.
    Viewer,
}

impl Role {
    /// `admin` or `viewer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    /// The role named `text`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// A dashboard user's login: an e-mail address, trimmed and lower-cased
/// (one account per address, whatever its case). Built only by
/// [`UserEmail::parse`], as `signhook admin create-user` and the Team page's
/// invitations both do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserEmail(String);

impl UserEmail {
    /// The longest address accepted (RFC 5321's path limit, rounded up).
    pub const MAX_CHARS: usize = 320;

    /// The address in `text`, or why it is not one. Only the shape is
    /// checked (something, `@`, a host with a dot; no spaces or control
    /// characters): whether mail reaches it is for the mail server to say.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let email = text.trim();
        let shaped = email
            .rsplit_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'));
        let clean = !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if shaped && clean && email.chars().count() <= Self::MAX_CHARS {
            Ok(UserEmail(email.to_lowercase()))
        } else {
            Err("email must be an e-mail address like ada@example.com")
        }
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserEmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A fresh random token for a link or a session: 43 URL-safe characters
/// (256 bits).
pub fn generate_token(rng: &mut (impl Rng + rand::CryptoRng)) -> String {
    rng.sample_iter(&Alphanumeric).take(43).map(char::from).collect()
}

/// The length of a generated webhook signing key, in bytes.
pub const WEBHOOK_KEY_BYTES: usize = 32;

/// Fresh random bytes for a webhook signing key.
pub fn generate_webhook_key(rng: &mut (impl Rng + rand::CryptoRng)) -> [u8; WEBHOOK_KEY_BYTES] {
    let mut key = [0u8; WEBHOOK_KEY_BYTES];
    rng.fill(&mut key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_is_an_address_in_lower_case() {
        assert_eq!(
            UserEmail::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@localhost",
            "ada lovelace@example.com",
            "ada@exa\tmple.com",
        ] {
            assert!(UserEmail::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(UserEmail::MAX_CHARS));
        assert!(UserEmail::parse(&long).is_err());
    }

    #[test]
    fn keys_carry_their_environment() {
        let mut rng = rand::thread_rng();
        let live = generate_api_key(Environment::Live, &mut rng);
        let test = generate_api_key(Environment::Test, &mut rng);
        assert_eq!(Environment::of_key(&live), Some(Environment::Live));
        assert_eq!(Environment::of_key(&test), Some(Environment::Test));
        assert_eq!(Environment::of_key("pk_live_x"), None);
        assert_eq!(live.len(), 8 + KEY_RANDOM_CHARS);
        assert_ne!(live, generate_api_key(Environment::Live, &mut rng));
    }
}

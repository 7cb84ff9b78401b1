//! Secrets (registry passwords, tokens) in a type whose `Debug` never shows them, so a
//! `#[derive(Debug)]` on a config or client struct cannot leak one into a log.

/// A secret string. `Debug` prints `***`; there is no `Display`. Read it with
/// [`SecretString::expose`] only where it is sent.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps `secret`.
    pub fn new(secret: String) -> Self {
        SecretString(secret)
    }

    /// The secret itself, for the one place it is used (an Authorization header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(secret: String) -> Self {
        SecretString(secret)
    }
}

impl From<&str> for SecretString {
    fn from(secret: &str) -> Self {
        SecretString(secret.to_string())
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Options {
            password: Option<SecretString>,
        }
        let options = Options {
            password: Some("hunter2".into()),
        };
        let shown = format!("{options:?} {options:#?}");
        assert!(!shown.contains("hunter2") && shown.contains("***"), "{shown}");
        assert_eq!(options.password.as_ref().map(SecretString::expose), Some("hunter2"));
    }
}

//! What `shoal register` is told on its command line: the apps
//! (`name@version:port`, comma-separated) and metadata (`key=value`), and
//! how a metadata value is read. `shoal registrations --meta` and
//! `shoal nodes --info` read `key=value` the same way, to filter.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;
use shoal::Registration;

/// One app to register: `name@version:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AppSpec {
    /// The service name (no `/`, space or control character).
    pub name: String,
    /// Its version (the same rules).
    pub version: String,
    /// The port it serves on, 1 to 65535.
    pub port: u16,
}

impl fmt::Display for AppSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.name, self.version, self.port)
    }
}

impl FromStr for AppSpec {
    type Err = String;

    /// `name@version:port`. The name ends at the first `@` and the port
    /// starts after the last `:`, so a version may hold `:` (`1:2.0`) but a
    /// name may not hold `@`.
    fn from_str(s: &str) -> Result<AppSpec, String> {
        let shape = || format!("{s:?} is not NAME@VERSION:PORT (for example myapp@1.0.0:8080)");
        let (name, rest) = s.split_once('@').ok_or_else(shape)?;
        let (version, port) = rest.rsplit_once(':').ok_or_else(shape)?;
        if name.is_empty() || version.is_empty() || port.is_empty() {
            return Err(shape());
        }
        let port = match port.parse::<u32>() {
            Ok(0) => return Err(format!("{s:?}: port 0 is not a port (1 to 65535)")),
            Ok(p) => u16::try_from(p)
                .map_err(|_| format!("{s:?}: port {p} is out of range (1 to 65535)"))?,
            Err(_) => return Err(format!("{s:?}: port {port:?} is not a number")),
        };
        // The registry's own rules for a name and a version (no '/', which
        // would make the id /name/version/host/port ambiguous; no space or
        // control character; 1 to 255 bytes), checked now with a stand-in
        // host so that the message names the part at fault.
        Registration::builder(name, version, "h", port)
            .build()
            .map_err(|e| format!("{s:?}: {e}"))?;
        Ok(AppSpec {
            name: name.to_owned(),
            version: version.to_owned(),
            port,
        })
    }
}

/// Every app of `name@version:port[,name@version:port…]`, for clap.
pub fn parse_apps(s: &str) -> Result<Vec<AppSpec>, String> {
    s.split(',').map(|one| one.trim().parse()).collect()
}

/// `key=value`, for `--meta` and `--info`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    /// The key (not empty).
    pub key: String,
    /// The value as given.
    pub raw: String,
    /// The value as JSON: see [`json_or_string`].
    pub value: Value,
}

impl FromStr for KeyValue {
    type Err = String;

    /// Splits at the first `=`: `url=http://x/?a=b` is key `url`.
    fn from_str(s: &str) -> Result<KeyValue, String> {
        let (key, raw) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
        if key.is_empty() {
            return Err(format!("{s:?} has no key before '='"));
        }
        Ok(KeyValue {
            key: key.to_owned(),
            raw: raw.to_owned(),
            value: json_or_string(raw),
        })
    }
}

impl KeyValue {
    /// Whether `found` (the key's value in some object) is this value:
    /// equal as JSON, or a string equal to the text given (so `--meta
    /// port=80` matches both `80` and `"80"`).
    pub fn matches(&self, found: Option<&Value>) -> bool {
        match found {
            Some(v) => *v == self.value || v.as_str() == Some(self.raw.as_str()),
            None => false,
        }
    }
}

/// A value read as JSON if it is JSON (`3`, `true`, `{"a":1}`, `"x"`),
/// else as the string it is (`eu-west`): metadata typed by the shell
/// stays readable, and numbers and objects keep their type.
pub fn json_or_string(raw: &str) -> Value {
    serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, version: &str, port: u16) -> AppSpec {
        AppSpec {
            name: name.into(),
            version: version.into(),
            port,
        }
    }

    #[test]
    fn lists_of_apps_parse() {
        assert_eq!(
            parse_apps("myapp@1.0.0:8080,other@2.1.0:9090").unwrap(),
            vec![app("myapp", "1.0.0", 8080), app("other", "2.1.0", 9090)]
        );
        assert_eq!(
            parse_apps("a@1:2:65535").unwrap(),
            vec![app("a", "1:2", 65535)]
        );
        assert_eq!(parse_apps(" a@1:1 , b@2:2").unwrap().len(), 2);
    }

    #[test]
    fn bad_specs_name_the_problem() {
        let cases = [
            ("myapp", "not NAME@VERSION:PORT"),
            ("myapp@1.0.0", "not NAME@VERSION:PORT"),
            ("@1.0.0:80", "not NAME@VERSION:PORT"),
            ("a@:80", "not NAME@VERSION:PORT"),
            ("a@1:", "not NAME@VERSION:PORT"),
            ("a@1:0", "port 0"),
            ("a@1:65536", "port 65536 is out of range"),
            ("a@1:99999999999", "is not a number"),
            ("a@1:http", "is not a number"),
            ("my/app@1:80", "name is not usable: it contains '/'"),
            ("app@1/2:80", "version is not usable: it contains '/'"),
            ("my app@1:80", "name is not usable"),
            ("a@1:1,,b@2:2", "not NAME@VERSION:PORT"),
        ];
        for (spec, want) in cases {
            let err = parse_apps(spec).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
        }
        let long = format!("{}@1:1", "x".repeat(256));
        assert!(parse_apps(&long).unwrap_err().contains("255 bytes"));
    }

    #[test]
    fn meta_values_are_json_when_they_parse_else_strings() {
        let kv: KeyValue = "zone=eu-west".parse().unwrap();
        assert_eq!(
            (kv.key.as_str(), kv.value.clone()),
            ("zone", Value::from("eu-west"))
        );
        let kv: KeyValue = "weight=3".parse().unwrap();
        assert_eq!(kv.value, Value::from(3));
        let kv: KeyValue = r#"tags=["a","b"]"#.parse().unwrap();
        assert_eq!(kv.value, serde_json::json!(["a", "b"]));
        let kv: KeyValue = "url=http://x/?a=b".parse().unwrap();
        assert_eq!((kv.key.as_str(), kv.raw.as_str()), ("url", "http://x/?a=b"));
        let kv: KeyValue = "empty=".parse().unwrap();
        assert_eq!(kv.value, Value::from(""));
        assert!("novalue".parse::<KeyValue>().is_err());
        assert!("=v".parse::<KeyValue>().is_err());
    }

    #[test]
    fn a_filter_matches_json_and_the_text_given() {
        let kv: KeyValue = "port=80".parse().unwrap();
        assert!(kv.matches(Some(&Value::from(80))));
        assert!(kv.matches(Some(&Value::from("80"))));
        assert!(!kv.matches(Some(&Value::from(81))));
        assert!(!kv.matches(None));
    }
}

//! `${VAR}` in string values of the configuration: replaced by the environment variable's
//! value before the file is read into its types, so the `PG*` and `DATABRICKS_*` variables a
//! Databricks App or a Kubernetes pod gets can feed the config directly.
//!
//! Rules: `${NAME}` with NAME of letters, digits and `_` (not starting with a digit) is
//! replaced; `$${` is a literal `${`; any other `$` is kept as is. A variable that is not set
//! is an error naming it and the key; so is a `${` without its `}` or with an invalid name.
//! Only string values are touched (numbers and booleans cannot hold `${…}`), keys never. No
//! error ever quotes the value around the variable, which may be a secret.

use super::ConfigError;

/// An interpolation problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// `${NAME}` names a variable that is not set.
    #[error("environment variable {name} is not set (referenced as ${{{name}}})")]
    Unset {
        /// The variable.
        name: String,
    },
    /// `${` without `}`.
    #[error("`${{` without a closing `}}` (write `$${{` for a literal `${{`)")]
    Unclosed,
    /// `${…}` whose content is not a variable name.
    #[error("`${{…}}` must hold a variable name (letters, digits, `_`)")]
    BadName,
}

/// Replaces `${NAME}` in every string value of a parsed document (the spanned form the loader
/// reads, so errors keep their lines); errors name the dotted key.
pub(super) fn interpolate_document(
    table: &mut toml::de::DeTable<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (key, value) in table.iter_mut() {
        interpolate_de(value.get_mut(), key.get_ref(), env)?;
    }
    Ok(())
}

fn interpolate_de(
    value: &mut toml::de::DeValue<'_>,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    use toml::de::DeValue;
    match value {
        DeValue::String(s) if s.contains('$') => {
            let replaced =
                interpolate(s, env).map_err(|e| super::load::invalid(path, e.to_string()))?;
            *s = replaced.into();
        }
        DeValue::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                interpolate_de(v.get_mut(), &format!("{path}[{i}]"), env)?;
            }
        }
        DeValue::Table(t) => {
            for (k, v) in t.iter_mut() {
                interpolate_de(v.get_mut(), &format!("{path}.{}", k.get_ref()), env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One string with `${NAME}` replaced.
pub fn interpolate(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or(InterpolateError::Unclosed)?;
            let name = &after[..end];
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(InterpolateError::BadName);
            }
            let value = env(name).ok_or_else(|| InterpolateError::Unset {
                name: name.to_owned(),
            })?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "PGHOST" => Some("instance-1.database.example".into()),
            "EMPTY" => Some(String::new()),
            "SECRETISH" => Some("s3cr3t".into()),
            _ => None,
        }
    }

    #[test]
    fn replaces_escapes_and_keeps_lone_dollars() {
        assert_eq!(
            interpolate("${PGHOST}", &env).unwrap(),
            "instance-1.database.example"
        );
        assert_eq!(
            interpolate("h=${PGHOST}:x", &env).unwrap(),
            "h=instance-1.database.example:x"
        );
        assert_eq!(interpolate("$${PGHOST}", &env).unwrap(), "${PGHOST}");
        assert_eq!(interpolate("a$b $ $$x", &env).unwrap(), "a$b $ $$x");
        assert_eq!(interpolate("${EMPTY}!", &env).unwrap(), "!");
        assert_eq!(interpolate("no vars", &env).unwrap(), "no vars");
        // Replacement text is not interpolated again.
        let tricky = |_: &str| Some("${PGHOST}".to_owned());
        assert_eq!(interpolate("${X}", &tricky).unwrap(), "${PGHOST}");
    }

    #[test]
    fn errors_name_the_variable_but_not_the_value() {
        assert_eq!(
            interpolate("pw-${MISSING}", &env),
            Err(InterpolateError::Unset {
                name: "MISSING".into()
            })
        );
        assert_eq!(
            interpolate("${PGHOST", &env),
            Err(InterpolateError::Unclosed)
        );
        assert_eq!(interpolate("${1X}", &env), Err(InterpolateError::BadName));
        assert_eq!(interpolate("${}", &env), Err(InterpolateError::BadName));
        assert_eq!(interpolate("${A-B}", &env), Err(InterpolateError::BadName));
        let e = interpolate("s3cr3t-${MISSING}", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("MISSING") && !e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn tables_are_walked_and_errors_name_the_key() {
        let mut t = toml::de::DeTable::parse(
            "[server]\nlisten = \"${PGHOST}\"\nworkers = 2\n\
             [[databases]]\nname = \"d\"\npassword = \"x${SECRETISH}\"\nhost = \"${NOPE}\"\n",
        )
        .unwrap();
        let e = interpolate_document(t.get_mut(), &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("databases[0].host") && e.contains("NOPE"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
        let mut t = toml::de::DeTable::parse("[server]\nlisten = [\"${PGHOST}:1\"]\nworkers = 2\n")
            .unwrap();
        interpolate_document(t.get_mut(), &env).unwrap();
        let listen = format!("{:?}", t.get_ref().get("server"));
        assert!(listen.contains("instance-1.database.example:1"), "{listen}");
    }
}

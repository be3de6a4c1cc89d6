//! Reading the documents staff write — a risk assessment, a plan revision — from a TOML or
//! JSON file (or standard input), so a long form can be drafted, checked and kept.

use std::io::Read;
use std::path::Path;

use anyhow::{Context as _, anyhow};

/// Reads `path` (or standard input for `-`) as TOML or JSON and returns it as JSON text.
pub fn read_as_json(path: &Path) -> anyhow::Result<String> {
    let text = if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("could not read standard input")?;
        s
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?
    };
    to_json(&text).map_err(|e| anyhow!("{} {e}", path.display()))
}

/// TOML or JSON text as JSON text, or what is wrong with it.
pub(crate) fn to_json(text: &str) -> Result<String, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("is not valid JSON ({e}): fix it and try again"))?;
        return Ok(v.to_string());
    }
    let v: toml::Value = toml::from_str(text)
        .map_err(|e| format!("is not valid TOML ({}): fix it and try again", e.message()))?;
    serde_json::to_string(&v).map_err(|e| format!("could not be read ({e})"))
}

/// For tests elsewhere in the CLI: the same conversion `read_as_json` does.
#[cfg(test)]
pub fn to_json_for_tests(text: &str) -> String {
    to_json(text).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_json_read_the_same() {
        let from_toml = to_json("reason = \"Nan asked\"\n[camera]\nallowed = false\n").unwrap();
        let from_json =
            to_json("{\"reason\":\"Nan asked\",\"camera\":{\"allowed\":false}}").unwrap();
        let a: serde_json::Value = serde_json::from_str(&from_toml).unwrap();
        let b: serde_json::Value = serde_json::from_str(&from_json).unwrap();
        assert_eq!(a, b);
        assert!(to_json("reason = ").unwrap_err().contains("not valid TOML"));
    }
}

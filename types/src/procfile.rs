//! The Procfile: which process types an app has and the command each one runs. Parsed the
//! same way by the CLI (`ouro deploy`) and by the API (before a build starts).

use std::collections::BTreeMap;

use crate::valid_process_type;

/// Process type → command, from a Procfile's text. Lines are `type: command`; blank lines
/// and `#` comments are skipped. Every mistake is a one-line message naming its line.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut types = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |message: String| format!("Procfile line {number}: {message}");
        let (process_type, command) =
            line.split_once(':').ok_or_else(|| at("expected \"type: command\"".to_string()))?;
        let (process_type, command) = (process_type.trim(), command.trim());
        if process_type.is_empty() {
            return Err(at("expected \"type: command\"".to_string()));
        }
        if !valid_process_type(process_type) {
            return Err(at(format!("process type `{process_type}` must be 1 to 30 of a-z, 0-9, `_` and `-`")));
        }
        if process_type == "run" {
            return Err(at("process type `run` is kept for one-off dynos (`ouro run`); pick another name".to_string()));
        }
        if command.is_empty() {
            return Err(at(format!("process type `{process_type}` has no command")));
        }
        if types.insert(process_type.to_string(), command.to_string()).is_some() {
            return Err(at(format!("process type `{process_type}` is given twice")));
        }
    }
    if types.is_empty() {
        return Err("the Procfile has no process types: add lines like `web: python3 app.py`".to_string());
    }
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_procfiles() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("web: python3 app.py\n", &[("web", "python3 app.py")]),
            ("web: python3 app.py", &[("web", "python3 app.py")]),
            ("web:python3 app.py\r\n", &[("web", "python3 app.py")]),
            ("  web :   gunicorn app:app -b 0.0.0.0:$PORT  \n", &[("web", "gunicorn app:app -b 0.0.0.0:$PORT")]),
            (
                "# the site\n\nweb: bin/web\n   # indented comment\nworker: bin/work --queue=a\nclock_1: bin/clock\n",
                &[("clock_1", "bin/clock"), ("web", "bin/web"), ("worker", "bin/work --queue=a")],
            ),
            ("release-phase: ./migrate # not a comment\n", &[("release-phase", "./migrate # not a comment")]),
        ];
        for (text, expect) in cases {
            let expect: BTreeMap<String, String> = expect.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(parse(text).unwrap(), expect, "{text:?}");
        }
    }

    #[test]
    fn bad_procfiles() {
        let cases = [
            ("web python3 app.py\n", "Procfile line 1: expected \"type: command\""),
            ("# c\n\nweb: ok\njust words\n", "Procfile line 4: expected \"type: command\""),
            (": python3 app.py\n", "Procfile line 1: expected \"type: command\""),
            ("Web: x\n", "Procfile line 1: process type `Web` must be"),
            ("web.1: x\n", "Procfile line 1: process type `web.1` must be"),
            ("my worker: x\n", "Procfile line 1: process type `my worker` must be"),
            ("web:\n", "Procfile line 1: process type `web` has no command"),
            ("web:    \n", "Procfile line 1: process type `web` has no command"),
            ("web: a\nworker: b\nweb: c\n", "Procfile line 3: process type `web` is given twice"),
            ("web: a\nrun: b\n", "Procfile line 2: process type `run` is kept for one-off dynos"),
            ("", "the Procfile has no process types"),
            ("# only comments\n\n   \n", "the Procfile has no process types"),
        ];
        for (text, expect) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.starts_with(expect), "{text:?}: {error}");
        }
    }
}

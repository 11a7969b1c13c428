//! `.slugignore` (Heroku's rule): what it names is removed from the app before any buildpack
//! runs. One glob a line, `#` comments; `/x` is anchored at the app's root, other patterns
//! match at any depth. Globs are pathlib's: `*`, `?`, `[...]` within one path part (dotfiles
//! included), `**` for any number of directories.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Context as _, Result};
use crate::log::Log;

/// Removes what `<app>/.slugignore` names and logs how many paths that was; without the file,
/// does nothing and logs nothing.
pub fn apply(app: &Path, log: &Log) -> Result<()> {
    let file = app.join(".slugignore");
    if !fs::metadata(&file).is_ok_and(|meta| meta.is_file()) {
        return Ok(());
    }
    let text = fs::read(&file).context(|| format!("cannot read {}", file.display()))?;
    let removed = remove(app, &String::from_utf8_lossy(&text))?;
    log.topic(&format!("Removed {removed} path{} named in .slugignore", if removed == 1 { "" } else { "s" }));
    Ok(())
}

/// A line of `.slugignore`, split into path parts.
#[derive(Debug, PartialEq)]
struct Pattern {
    /// `/x`: only at the root.
    anchored: bool,
    parts: Vec<String>,
}

/// Removes what the patterns of `text` match under `root` (never `root`, never through a
/// symlink: a matching link is removed, not what it points to), pattern by pattern, the
/// deepest paths first; how many paths were removed.
fn remove(root: &Path, text: &str) -> Result<usize> {
    let mut removed = 0;
    for pattern in patterns(text) {
        let mut parts: Vec<&str> = pattern.parts.iter().map(String::as_str).collect();
        if !pattern.anchored {
            parts.insert(0, "**");
        }
        let mut found = BTreeSet::new();
        glob(root, &parts, &mut found);
        found.remove(root);
        let mut found: Vec<PathBuf> = found.into_iter().collect();
        found.sort_by_key(|path| Reverse(path.components().count()));
        for path in found {
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {
                    let _ = fs::remove_dir_all(&path);
                }
                Ok(_) => fs::remove_file(&path).context(|| format!("cannot remove {}", path.display()))?,
                Err(_) => {} // Gone with a directory removed before.
            }
            removed += 1;
        }
    }
    Ok(removed)
}

/// The patterns of a `.slugignore`: blank lines, `#` comments and patterns with a `..` part
/// are left out; slashes around a pattern only say whether it is anchored.
fn patterns(text: &str) -> Vec<Pattern> {
    let lines = text.split(['\n', '\r']).map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#'));
    lines
        .filter_map(|line| {
            let parts: Vec<&str> = line.split('/').filter(|part| !part.is_empty() && *part != ".").collect();
            if parts.is_empty() || parts.contains(&"..") {
                return None;
            }
            Some(Pattern { anchored: line.starts_with('/'), parts: parts.into_iter().map(str::to_string).collect() })
        })
        .collect()
}

/// Adds to `found` the paths under `dir` that `parts` match, one part a path level (`**`: any
/// number of directories; last, everything under them too). Symlinks are not followed.
fn glob(dir: &Path, parts: &[&str], found: &mut BTreeSet<PathBuf>) {
    let Some((&part, rest)) = parts.split_first() else {
        found.insert(dir.to_path_buf());
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else { return };
    let children = entries.filter_map(|entry| entry.ok()).map(|entry| {
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        (entry.path(), entry.file_name(), is_dir)
    });
    let children: Vec<_> = children.collect();
    if part == "**" {
        glob(dir, rest, found);
        for (path, _, is_dir) in children {
            if is_dir {
                glob(&path, parts, found);
            } else if rest.is_empty() {
                found.insert(path);
            }
        }
        return;
    }
    for (path, name, is_dir) in children {
        if !fnmatch(part, &name.to_string_lossy()) {
            continue;
        }
        if rest.is_empty() {
            found.insert(path);
        } else if is_dir {
            glob(&path, rest, found);
        }
    }
}

/// Whether `name` matches the shell pattern `pattern` as Python's `fnmatch` (case-sensitive)
/// has it: `*` any text, `?` one character, `[abc]`, `[a-z]`, `[!abc]` one of (or none of)
/// them; a `[` without its `]` is itself; nothing is escaped.
fn fnmatch(pattern: &str, name: &str) -> bool {
    let tokens = tokens(pattern);
    let name: Vec<char> = name.chars().collect();
    let (mut t, mut n) = (0, 0);
    // The last `*` seen and where in `name` it would next try to end.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, n));
                t += 1;
            }
            Some(token) if token.matches(name[n]) => (t, n) = (t + 1, n + 1),
            _ => match star {
                Some((star_t, star_n)) => {
                    (t, n) = (star_t + 1, star_n + 1);
                    star = Some((star_t, star_n + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|token| *token == Token::Star)
}

#[derive(Debug, PartialEq)]
enum Token {
    Star,
    Any,
    Char(char),
    /// Ranges (a lone character is `(c, c)`); whether it is negated.
    Set(Vec<(char, char)>, bool),
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Star | Token::Any => true,
            Token::Char(expected) => c == *expected,
            Token::Set(ranges, negated) => ranges.iter().any(|&(low, high)| low <= c && c <= high) != *negated,
        }
    }
}

fn tokens(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if tokens.last() == Some(&Token::Star) => {}
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::Any),
            '[' => {
                // The set ends at the first `]` after a leading `!` and a leading `]`.
                let mut end = i + 1;
                let negated = chars.get(end) == Some(&'!');
                end += usize::from(negated);
                end += usize::from(chars.get(end) == Some(&']'));
                while end < chars.len() && chars[end] != ']' {
                    end += 1;
                }
                if end >= chars.len() {
                    tokens.push(Token::Char('['));
                } else {
                    let start = i + 1 + usize::from(negated);
                    tokens.push(Token::Set(ranges(&chars[start..end]), negated));
                    i = end;
                }
            }
            c => tokens.push(Token::Char(c)),
        }
        i += 1;
    }
    tokens
}

/// The ranges of a set's inside: `a-z` is a range (none when reversed), a `-` first or last
/// is itself.
fn ranges(inside: &[char]) -> Vec<(char, char)> {
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < inside.len() {
        if i + 2 < inside.len() && inside[i + 1] == '-' {
            if inside[i] <= inside[i + 2] {
                ranges.push((inside[i], inside[i + 2]));
            }
            i += 3;
        } else {
            ranges.push((inside[i], inside[i]));
            i += 1;
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_fnmatch_does() {
        let check = |pattern: &str, name: &str, expect: bool| {
            assert_eq!(fnmatch(pattern, name), expect, "{pattern:?} against {name:?}");
        };
        check("*.log", "a.log", true);
        check("*.log", ".hidden.log", true);
        check("*.log", "a.log.gz", false);
        check("*", "", true);
        check("a*b*c", "aXXbYYc", true);
        check("a*b*c", "aXXbYYcb", false);
        check("**", "anything", true);
        check("?", "a", true);
        check("?", "ab", false);
        check("?", "é", true);
        check("te?t.md", "text.md", true);
        check("[ab]*.bin", "b2.bin", true);
        check("[ab]*.bin", "c.bin", false);
        check("[a-c]x", "bx", true);
        check("[a-c]x", "dx", false);
        check("[!a-c]x", "dx", true);
        check("[!a-c]x", "ax", false);
        check("[z-a]", "z", false);
        check("[-a]", "-", true);
        check("[a-]", "-", true);
        check("[]]", "]", true);
        check("[!]]", "]", false);
        check("[!]]", "a", true);
        check("[", "[", true);
        check("a[b", "a[b", true);
        check("\\*", "\\x", true);
        check("README", "readme", false);
    }

    #[test]
    fn patterns_skip_comments_blanks_and_dotdot() {
        let text = "# a comment\n   # indented\n\n  *.log  \r\n/tmp/\nsub//./x\n../up\n/a/../b\n/\n";
        let pattern =
            |anchored, parts: &[&str]| Pattern { anchored, parts: parts.iter().map(|p| p.to_string()).collect() };
        assert_eq!(
            patterns(text),
            [pattern(false, &["*.log"]), pattern(true, &["tmp"]), pattern(false, &["sub", "x"])]
        );
    }

    #[test]
    fn removes_what_the_patterns_name_anchored_or_at_any_depth() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        let app = root.path().join("app");
        let files = [
            "a.log",
            ".hidden.log",
            "sub/b.log",
            "sub/deep/c.log",
            "x",
            "sub/x",
            "docs/guide.md",
            "sub/docs/api.md",
            "test.md",
            "b2.bin",
            "c.bin",
            "keep.txt",
            "vendor/cache/pkg.gem",
            "sub/vendor/cache/other.gem",
            "linked/inside.log",
        ];
        for file in files {
            fs::create_dir_all(app.join(file).parent().unwrap()).unwrap();
            fs::write(app.join(file), "x").unwrap();
        }
        fs::write(&outside, "x").unwrap();
        fs::write(root.path().join("outside.log"), "x").unwrap();
        std::os::unix::fs::symlink(app.join("linked"), app.join("link")).unwrap();
        std::os::unix::fs::symlink(root.path(), app.join("up")).unwrap();
        std::os::unix::fs::symlink(app.join("linked"), app.join("linked.log")).unwrap();

        let text = "# build leftovers\n*.log\n/x\ndocs/\n../outside\n/sub/../keep.txt\nte?t.md\n[ab]*.bin\n/**/cache\n";
        let removed = remove(&app, text).unwrap();

        let mut left: Vec<String> = Vec::new();
        let mut stack = vec![app.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                left.push(entry.path().strip_prefix(&app).unwrap().display().to_string());
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                }
            }
        }
        left.sort();
        assert_eq!(
            left,
            ["c.bin", "keep.txt", "link", "linked", "sub", "sub/deep", "sub/vendor", "sub/x", "up", "vendor"],
        );
        // a.log .hidden.log sub/b.log sub/deep/c.log linked/inside.log linked.log (the link),
        // x, docs sub/docs, test.md, b2.bin, vendor/cache sub/vendor/cache.
        assert_eq!(removed, 13);
        assert!(outside.exists() && root.path().join("outside.log").exists());
        assert!(app.join("linked").is_dir(), "a matching symlink is removed, not its target");
    }
}

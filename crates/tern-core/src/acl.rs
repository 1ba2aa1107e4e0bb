//! Access control lists in Mosquitto's `acl_file` format, and the decisions made with them.
//!
//! # The file
//!
//! ```text
//! # lines before any "user" line apply to anonymous clients (no user name in CONNECT)
//! topic read $SYS/#
//! user alice
//! topic readwrite sensors/alice/#
//! topic deny sensors/alice/secret
//! pattern write devices/%c/up      # %c = client id, %u = user name; for every client
//! ```
//!
//! - `topic [read|write|readwrite|deny] FILTER`: no access word means `readwrite`; a filter
//!   containing a space needs the access word. The entry belongs to the section it is in: the
//!   anonymous section before the first `user` line, else the last `user NAME`'s section
//!   (sections of the same name are merged).
//! - `pattern [read|write|readwrite|deny] FILTER`: `%c` and `%u` are replaced by the client id
//!   and the user name; patterns apply to every client, wherever they are written. A pattern
//!   using `%u` does not apply to a client without a user name.
//! - `#` at the start of a line (after blanks) is a comment; blank lines are skipped.
//!
//! # Decisions
//!
//! With an ACL, a client may do only what an entry grants ("default deny"). The entries that
//! apply to a client are those of its section (the anonymous one, or its user name's) and the
//! patterns. Every applicable `deny` entry is looked at before any grant: one that matches
//! refuses, whatever the grants say. (Mosquitto looks at the section's denies, then its grants,
//! then the patterns' denies, then their grants, so that a `topic` grant wins over a
//! `pattern deny`; Tern lets every deny win, which only ever refuses more.)
//!
//! - [`Access::Write`] (PUBLISH, the Will at CONNECT) and [`Access::Read`] (every delivery:
//!   routed, retained, wills) match the topic name against each entry's filter with MQTT's
//!   rules: `#` and `+` do not match a topic starting with `$`, so `$SYS/...` is readable only
//!   through an entry that names `$SYS` (or another `$` level) literally.
//! - A subscription ([`Acl::allows_subscribe`]) is accepted if a `read`/`readwrite` entry
//!   **covers** its filter: every topic the subscription can match is matched by the entry's
//!   filter. This is the comparison Mosquitto's dynamic-security plugin makes for its subscribe
//!   ACLs (`sub_acl_check`; Mosquitto's `acl_file` itself never refuses a SUBSCRIBE and only
//!   filters deliveries), done level by level: an entry's `+` covers any level of the
//!   subscription (`+` included), a literal level covers only the same literal, an entry ending
//!   in `#` covers any further levels (and a subscription ending in `#` needs an entry ending in
//!   `#`). Unlike that plugin, a `$` first level is only covered by the same literal, and `/#`
//!   does not cover `#`. A `deny` entry refuses the subscription when it covers the filter
//!   (nothing could ever be delivered through it); a deny that only overlaps the filter lets the
//!   subscription through and removes the messages it matches at delivery. A shared
//!   subscription is checked with its filter, without `$share/NAME/`.
//!
//! # Identities in patterns
//!
//! A client id or user name that is empty or contains `+`, `#` or `/` could fill a pattern's
//! level with a wildcard, several levels or nothing; one that starts with `$` would make a
//! pattern starting with `%c` or `%u` reach `$SYS`. Such a value makes the patterns that use it
//! unsafe: an unsafe grant grants nothing, and an unsafe `deny` refuses everything (fail
//! closed). Mosquitto substitutes `%c`/`%u` anywhere in the filter text, and so does Tern; since
//! a safe value contains no `/`, `+` or `#`, it can only ever be part of one level.

use std::fmt;

use tern_codec::split_shared;

use crate::FastMap;

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Receive the messages published to it (and subscribe to it).
    Read,
    /// Publish to it, or make it its Will Topic.
    Write,
}

/// The client an access decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    /// The client id, assigned ids included.
    pub client_id: &'a str,
    /// The user name given in CONNECT; `None` for an anonymous client.
    pub username: Option<&'a str>,
}

/// An error or warning about an ACL file: the 1-based line (if it concerns one), the line's
/// keyword (`topic`, `pattern`, `user` or the unknown word), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclDiagnostic {
    /// 1-based line, `None` for the file as a whole.
    pub line: Option<usize>,
    /// The first word of the line.
    pub keyword: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for AclDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if let Some(keyword) = &self.keyword {
            write!(f, "`{keyword}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for AclDiagnostic {}

/// The access an entry gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Grant {
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "read" => Self::Read,
            "write" => Self::Write,
            "readwrite" => Self::ReadWrite,
            "deny" => Self::Deny,
            _ => return None,
        })
    }

    fn gives(self, access: Access) -> bool {
        matches!(
            (self, access),
            (Self::Read | Self::ReadWrite, Access::Read)
                | (Self::Write | Self::ReadWrite, Access::Write)
        )
    }
}

/// A value substituted into a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    ClientId,
    Username,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Box<str>),
    Var(Var),
}

/// One level of an entry's filter. A trailing `#` is not a level: see [`Rule::multi`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(Box<str>),
    /// `+`
    Single,
    /// A `pattern` level containing `%c` or `%u`.
    Template(Box<[Piece]>),
}

/// Whether a rule applies to a client, given its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applies {
    Yes,
    /// A `%u` pattern and a client without user name.
    No,
    /// A substituted value is unsafe (see the module documentation).
    Unsafe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    grant: Grant,
    levels: Box<[Level]>,
    /// Whether the filter ends in `#`.
    multi: bool,
    uses_client_id: bool,
    uses_username: bool,
}

impl Rule {
    fn new(grant: Grant, filter: &str, pattern: bool) -> Self {
        let mut parts: Vec<&str> = filter.split('/').collect();
        let multi = parts.last() == Some(&"#");
        if multi {
            parts.pop();
        }
        let levels: Box<[Level]> = parts
            .into_iter()
            .map(|part| match part {
                "+" => Level::Single,
                _ if pattern && (part.contains("%c") || part.contains("%u")) => {
                    Level::Template(template(part))
                }
                _ => Level::Literal(part.into()),
            })
            .collect();
        let uses = |var: Var| {
            levels.iter().any(|l| match l {
                Level::Template(pieces) => pieces.contains(&Piece::Var(var)),
                _ => false,
            })
        };
        Self {
            grant,
            multi,
            uses_client_id: uses(Var::ClientId),
            uses_username: uses(Var::Username),
            levels,
        }
    }

    /// Whether the first level of the filter is a wildcard, which never matches `$` topics.
    fn leading_wildcard(&self) -> bool {
        match self.levels.first() {
            Some(level) => *level == Level::Single,
            None => self.multi,
        }
    }

    fn applies(&self, who: Identity<'_>) -> Applies {
        if !self.uses_client_id && !self.uses_username {
            return Applies::Yes;
        }
        let username = match (self.uses_username, who.username) {
            (true, None) => return Applies::No,
            (_, u) => u.unwrap_or_default(),
        };
        let unsafe_value = |v: &str| v.is_empty() || v.contains(['+', '#', '/']);
        if (self.uses_client_id && unsafe_value(who.client_id))
            || (self.uses_username && unsafe_value(username))
        {
            return Applies::Unsafe;
        }
        // A value at the very start of the filter must not make it a `$` topic.
        if let Some(Level::Template(pieces)) = self.levels.first()
            && let Some(Piece::Var(var)) = pieces.first()
            && value(*var, who).starts_with('$')
        {
            return Applies::Unsafe;
        }
        Applies::Yes
    }

    /// Whether the filter matches the topic name (MQTT §4.7).
    fn matches_topic(&self, topic: &str, who: Identity<'_>) -> bool {
        if topic.starts_with('$') && self.leading_wildcard() {
            return false; // MQTT-4.7.2-1
        }
        let mut names = topic.split('/');
        for level in &self.levels {
            let Some(name) = names.next() else {
                return false;
            };
            let same = match level {
                Level::Single => true,
                Level::Literal(l) => **l == *name,
                Level::Template(pieces) => fills(pieces, name, who),
            };
            if !same {
                return false;
            }
        }
        // `a/#` also matches `a`.
        self.multi || names.next().is_none()
    }

    /// Whether every topic that the (valid, plain) subscription filter `filter` can match is
    /// matched by this entry's filter.
    fn covers(&self, filter: &str, who: Identity<'_>) -> bool {
        let mut sub: Vec<&str> = filter.split('/').collect();
        let sub_multi = sub.last() == Some(&"#");
        if sub_multi {
            sub.pop();
        }
        // A subscription reaches `$` topics only through a literal first level starting with `$`,
        // and an entry starting with a wildcard matches none of them.
        if sub.first().is_some_and(|l| l.starts_with('$')) && self.leading_wildcard() {
            return false;
        }
        let fits = match (self.multi, sub_multi) {
            (false, true) => false,
            (false, false) => self.levels.len() == sub.len(),
            // `a/#` covers `a/b` and `a`, not `x` (fewer levels than the entry's).
            (true, false) => self.levels.len() <= sub.len(),
            // `#` matches topics of one level or more: `+/#` covers it, `+/+/#` does not.
            (true, true) => self.levels.len() <= sub.len().max(1),
        };
        fits && self
            .levels
            .iter()
            .enumerate()
            .all(|(i, level)| match (level, sub.get(i)) {
                (Level::Single, _) => true,
                (Level::Literal(l), Some(s)) => **l == **s,
                (Level::Template(pieces), Some(s)) => *s != "+" && fills(pieces, s, who),
                // The level falls in the subscription's `#`: only `+` covers any level.
                (_, None) => false,
            })
    }
}

fn value<'a>(var: Var, who: Identity<'a>) -> &'a str {
    match var {
        Var::ClientId => who.client_id,
        Var::Username => who.username.unwrap_or_default(),
    }
}

/// Splits a pattern level into text and `%c`/`%u`.
fn template(level: &str) -> Box<[Piece]> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = level;
    while let Some(i) = rest.find('%') {
        let var = match rest.as_bytes().get(i + 1) {
            Some(b'c') => Some(Var::ClientId),
            Some(b'u') => Some(Var::Username),
            _ => None,
        };
        match var {
            Some(var) => {
                text.push_str(&rest[..i]);
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text).into()));
                }
                pieces.push(Piece::Var(var));
                rest = &rest[i + 2..];
            }
            None => {
                text.push_str(&rest[..=i]);
                rest = &rest[i + 1..];
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text.into()));
    }
    pieces.into()
}

/// Whether the template, filled with the client's values, is exactly `name`.
fn fills(pieces: &[Piece], name: &str, who: Identity<'_>) -> bool {
    let mut rest = name;
    for piece in pieces {
        let part = match piece {
            Piece::Text(t) => &**t,
            Piece::Var(var) => value(*var, who),
        };
        match rest.strip_prefix(part) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// A section's entries, denies apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rules {
    deny: Vec<Rule>,
    grant: Vec<Rule>,
}

impl Rules {
    fn push(&mut self, rule: Rule) {
        if rule.grant == Grant::Deny {
            self.deny.push(rule);
        } else {
            self.grant.push(rule);
        }
    }

    fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.grant.is_empty()
    }
}

/// The access rules of an ACL file. See the module documentation for the format and the
/// decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    anonymous: Rules,
    users: FastMap<Box<str>, Rules>,
    patterns: Rules,
}

impl Acl {
    /// Parses an ACL file's text. Returns the rules and warnings about lines that are accepted
    /// but probably not what their author meant, or the first error. A file without any
    /// `topic` or `pattern` entry is an error: it would refuse everything to everyone, which is
    /// far more often a truncated or wrong file than an intent.
    pub fn parse(text: &str) -> Result<(Self, Vec<AclDiagnostic>), AclDiagnostic> {
        let mut acl = Self::default();
        let mut warnings = Vec::new();
        let mut user: Option<Box<str>> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(line);
            let diagnostic = |message: String| AclDiagnostic {
                line: Some(index + 1),
                keyword: Some(keyword.to_owned()),
                message,
            };
            match keyword {
                "topic" | "pattern" => {
                    let pattern = keyword == "pattern";
                    let (rule, warning) = entry(rest, pattern).map_err(diagnostic)?;
                    warnings.extend(warning.map(diagnostic));
                    if pattern {
                        acl.patterns.push(rule);
                    } else {
                        match &user {
                            None => acl.anonymous.push(rule),
                            Some(name) => acl.users.entry(name.clone()).or_default().push(rule),
                        }
                    }
                }
                "user" => {
                    if rest.is_empty() {
                        return Err(diagnostic("missing user name".to_owned()));
                    }
                    user = Some(rest.into());
                }
                _ => {
                    return Err(diagnostic(
                        "unknown ACL line: expected `topic`, `pattern` or `user`".to_owned(),
                    ));
                }
            }
        }
        if acl.anonymous.is_empty() && acl.patterns.is_empty() && acl.users.is_empty() {
            return Err(AclDiagnostic {
                line: None,
                keyword: None,
                message: "the ACL file has no `topic` or `pattern` line: it would refuse \
                          everything to every client, which is refused as a likely mistake"
                    .to_owned(),
            });
        }
        Ok((acl, warnings))
    }

    /// Whether `who` may read (receive) or write (publish) the topic name `topic`.
    #[must_use]
    pub fn allows(&self, access: Access, who: Identity<'_>, topic: &str) -> bool {
        self.decide(who, access, |rule| rule.matches_topic(topic, who))
    }

    /// Whether `who` may subscribe to the (valid) topic filter `filter`, shared or not.
    #[must_use]
    pub fn allows_subscribe(&self, who: Identity<'_>, filter: &str) -> bool {
        let filter = match split_shared(filter) {
            Some(Ok((_, plain))) => plain,
            _ => filter,
        };
        self.decide(who, Access::Read, |rule| rule.covers(filter, who))
    }

    fn decide(&self, who: Identity<'_>, access: Access, hit: impl Fn(&Rule) -> bool) -> bool {
        let section = match who.username {
            None => Some(&self.anonymous),
            Some(name) => self.users.get(name),
        };
        let denied = |rules: &Rules| {
            rules.deny.iter().any(|r| match r.applies(who) {
                Applies::Yes => hit(r),
                Applies::No => false,
                Applies::Unsafe => true,
            })
        };
        if section.is_some_and(denied) || denied(&self.patterns) {
            return false;
        }
        let granted = |rules: &Rules| {
            rules
                .grant
                .iter()
                .any(|r| r.grant.gives(access) && r.applies(who) == Applies::Yes && hit(r))
        };
        section.is_some_and(granted) || granted(&self.patterns)
    }
}

/// The first blank-separated word of `text` and the rest, trimmed.
fn split_word(text: &str) -> (&str, &str) {
    match text.split_once([' ', '\t']) {
        Some((word, rest)) => (word, rest.trim()),
        None => (text, ""),
    }
}

/// Parses what follows `topic` or `pattern`: the rule, and maybe a warning.
fn entry(rest: &str, pattern: bool) -> Result<(Rule, Option<String>), String> {
    if rest.is_empty() {
        return Err("missing topic filter".to_owned());
    }
    let (first, remainder) = split_word(rest);
    let mut warning = None;
    let (grant, filter) = if remainder.is_empty() {
        if Grant::parse(first).is_some() {
            warning = Some(format!(
                "grants read and write access to the topic `{first}` itself: with one word only, \
                 the word is the topic"
            ));
        }
        (Grant::ReadWrite, first)
    } else {
        let grant = Grant::parse(first).ok_or_else(|| {
            format!(
                "expected read, write, readwrite or deny before the topic filter, got `{first}` \
                 (a filter containing spaces needs the access word)"
            )
        })?;
        (grant, remainder)
    };
    if !is_valid_filter(filter) {
        let hint = if filter.contains(" #") {
            " (a `#` comment must be on a line of its own)"
        } else {
            ""
        };
        return Err(format!(
            "invalid topic filter `{filter}`: `+` and `#` must fill a whole level, and `#` must \
             be the last level{hint}"
        ));
    }
    let rule = Rule::new(grant, filter, pattern);
    if pattern && !rule.uses_client_id && !rule.uses_username {
        warning = Some(format!(
            "the pattern `{filter}` has neither %c nor %u: it applies to every client alike"
        ));
    }
    Ok((rule, warning))
}

/// A valid plain topic filter (`$share/...` is just a literal level here).
fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        let ok = match level {
            "+" => true,
            "#" => last,
            _ => !level.contains(['+', '#']),
        };
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(text: &str) -> Acl {
        Acl::parse(text).expect("valid ACL").0
    }

    fn anon(client_id: &str) -> Identity<'_> {
        Identity {
            client_id,
            username: None,
        }
    }

    fn user<'a>(client_id: &'a str, username: &'a str) -> Identity<'a> {
        Identity {
            client_id,
            username: Some(username),
        }
    }

    use Access::{Read, Write};

    /// (who, access, topic, expected) against one file.
    fn check(file: &str, cases: &[(Identity<'_>, Access, &str, bool)]) {
        let acl = acl(file);
        for (who, access, topic, expected) in cases {
            assert_eq!(
                acl.allows(*access, *who, topic),
                *expected,
                "{who:?} {access:?} {topic} with\n{file}"
            );
        }
    }

    /// (who, filter, expected) against one file.
    fn check_subscribe(file: &str, cases: &[(Identity<'_>, &str, bool)]) {
        let acl = acl(file);
        for (who, filter, expected) in cases {
            assert_eq!(
                acl.allows_subscribe(*who, filter),
                *expected,
                "{who:?} subscribe {filter} with\n{file}"
            );
        }
    }

    #[test]
    fn access_words() {
        let file = "topic read r\ntopic write w\ntopic readwrite rw\ntopic both\ntopic deny d\n\
                    topic readwrite #\n";
        let a = anon("c");
        check(
            file,
            &[
                (a, Read, "r", true),
                (a, Write, "r", true), // granted by `#`
                (a, Read, "w", true),
                (a, Read, "rw", true),
                (a, Write, "both", true),
                (a, Read, "d", false),
                (a, Write, "d", false),
                (a, Read, "d/x", true), // deny `d` is not `d/#`
            ],
        );
        let file = "topic read r\ntopic write w\ntopic both\ntopic read a b\n";
        check(
            file,
            &[
                (a, Read, "r", true),
                (a, Write, "r", false),
                (a, Read, "w", false),
                (a, Write, "w", true),
                (a, Read, "both", true),
                (a, Write, "both", true),
                (a, Read, "a b", true),
                (a, Write, "a b", false),
                (a, Read, "x", false),
            ],
        );
    }

    #[test]
    fn sections_anonymous_and_users() {
        let file = "topic read public/#\n\
                    user alice\ntopic readwrite alice/#\n\
                    user bob\ntopic read alice/#\n\
                    user alice\ntopic write shared\n\
                    user name with spaces\ntopic read spaced\n";
        check(
            file,
            &[
                (anon("x"), Read, "public/a", true),
                (anon("x"), Read, "alice/a", false),
                (anon("alice"), Read, "alice/a", false), // client id is not the user name
                (user("x", "alice"), Write, "alice/a", true),
                (user("x", "alice"), Read, "public/a", false), // no anonymous rights for users
                (user("x", "alice"), Write, "shared", true),   // merged sections
                (user("x", "bob"), Read, "alice/a", true),
                (user("x", "bob"), Write, "alice/a", false),
                (user("x", "carol"), Read, "public/a", false), // unknown user: nothing
                (user("x", ""), Read, "public/a", false),
                (user("x", "name with spaces"), Read, "spaced", true),
            ],
        );
    }

    #[test]
    fn deny_wins_whatever_the_order() {
        let file = "topic readwrite a/#\ntopic deny a/secret\ntopic deny a/+/hidden\n\
                    topic readwrite a/secret\npattern deny a/%c\n\
                    user u\ntopic readwrite #\ntopic deny x\n";
        check(
            file,
            &[
                (anon("c"), Read, "a/b", true),
                (anon("c"), Read, "a/secret", false),
                (anon("c"), Write, "a/secret", false),
                (anon("c"), Write, "a/b/hidden", false),
                (anon("c"), Write, "a/c", false), // the pattern deny beats the topic grant
                (anon("d"), Write, "a/c", true),
                (user("c", "u"), Write, "x", false),
                (user("c", "u"), Write, "y", true),
                (user("c", "u"), Write, "a/c", false),
            ],
        );
    }

    #[test]
    fn patterns_substitute_client_id_and_username() {
        let file = "pattern readwrite devices/%c/#\npattern read users/%u/inbox\n\
                    pattern write both/%u/%c\npattern read mixed/pre-%c-post\n\
                    pattern read literal/%x/%%c\ntopic read topic/%c\n";
        check(
            file,
            &[
                (anon("d1"), Write, "devices/d1/up", true),
                (anon("d1"), Read, "devices/d1", true),
                (anon("d1"), Write, "devices/d2/up", false),
                (user("d1", "alice"), Write, "devices/d1/up", true), // patterns for everyone
                (user("d1", "alice"), Read, "users/alice/inbox", true),
                (user("d1", "alice"), Write, "users/alice/inbox", false),
                (user("d1", "alice"), Read, "users/bob/inbox", false),
                (anon("alice"), Read, "users/alice/inbox", false), // %u needs a user name
                (anon("alice"), Read, "users//inbox", false),
                (user("c", "u"), Write, "both/u/c", true),
                (user("c", "u"), Write, "both/c/u", false),
                (anon("c"), Write, "both//c", false),
                (anon("c7"), Read, "mixed/pre-c7-post", true),
                (anon("c7"), Read, "mixed/pre-c8-post", false),
                (anon("c"), Read, "literal/%x/%c", true),
                (anon("c"), Read, "topic/%c", true), // no substitution in `topic` lines
                (anon("c"), Read, "topic/c", false),
            ],
        );
    }

    #[test]
    fn unsafe_identities_never_fill_a_pattern() {
        let file = "pattern readwrite devices/%c/#\npattern read users/%u\n\
                    pattern read %c/own\ntopic read open\n";
        let mut cases = Vec::new();
        for id in ["+", "#", "a/b", "a+", "x#", "/"] {
            cases.push((anon(id), Write, "devices/a/b", false));
            cases.push((anon(id), Write, "devices/x", false));
            cases.push((anon(id), Read, "open", true)); // `topic` entries still apply
        }
        cases.push((anon("a"), Write, "devices/a/b", true));
        for name in ["+", "#", "a/b", ""] {
            cases.push((user("c", name), Read, "users/a", false));
            cases.push((user("c", name), Read, "users/", false));
        }
        // A value starting a filter must not reach `$` topics.
        cases.push((anon("$SYS"), Read, "$SYS/own", false));
        cases.push((anon("sys"), Read, "sys/own", true));
        cases.push((anon("$x"), Write, "devices/$x/up", true)); // not at the start: fine
        check(file, &cases);

        // An unsafe deny refuses everything.
        let file = "topic readwrite #\npattern deny private/%c\n";
        check(
            file,
            &[
                (anon("ok"), Write, "a", true),
                (anon("ok"), Write, "private/ok", false),
                (anon("a/b"), Write, "a", false),
                (anon("#"), Read, "a", false),
            ],
        );
        // A `%u` deny does not apply to anonymous clients, as in Mosquitto.
        check(
            "topic readwrite #\npattern deny private/%u\n",
            &[(anon("c"), Write, "private/c", true)],
        );
    }

    #[test]
    fn dollar_topics_need_a_literal_dollar_entry() {
        let file = "topic readwrite #\ntopic read +/+\ntopic read $SYS/broker/#\n\
                    user admin\ntopic read $SYS/#\ntopic read $other/+\n";
        check(
            file,
            &[
                (anon("c"), Read, "a/b", true),
                (anon("c"), Read, "$SYS/load", false),
                (anon("c"), Read, "$SYS/broker/uptime", true),
                (anon("c"), Read, "$SYS/broker", true),
                (anon("c"), Read, "$x/y", false),
                (user("c", "admin"), Read, "$SYS/anything", true),
                (user("c", "admin"), Read, "$other/x", true),
                (user("c", "admin"), Read, "a", false),
            ],
        );
    }

    #[test]
    fn subscription_filters_are_covered_level_by_level() {
        let file = "topic read a/b\ntopic read c/+\ntopic read d/#\ntopic read e/+/f/#\n\
                    topic write w/#\ntopic deny d/secret/#\ntopic deny d/x\n\
                    user all\ntopic read #\n\
                    user plus\ntopic read +/#\n\
                    user slash\ntopic read /#\n\
                    user sys\ntopic read $SYS/#\n";
        let a = anon("c");
        check_subscribe(
            file,
            &[
                (a, "a/b", true),
                (a, "a/+", false), // could match a/c
                (a, "a/#", false),
                (a, "c/x", true),
                (a, "c/+", true),
                (a, "c/#", false), // matches c, c/x/y
                (a, "c/x/y", false),
                (a, "d", true), // d/# matches d
                (a, "d/x/y", true),
                (a, "d/+", true), // the deny d/x only overlaps it
                (a, "d/#", true),
                (a, "d/+/+", true),
                (a, "d/x", false), // covered by a deny
                (a, "d/secret", false),
                (a, "d/secret/+", false),
                (a, "d/secret/#", false),
                (a, "e/x/f", true),
                (a, "e/+/f/#", true),
                (a, "e/+/+/#", false),
                (a, "e/x", false),
                (a, "w/x", false), // write only
                (a, "#", false),
                (a, "+", false),
                (a, "$SYS/#", false),
                (a, "$share/g/a/b", true),
                (a, "$share/g/a/+", false),
            ],
        );
        let all = user("c", "all");
        let plus = user("c", "plus");
        let slash = user("c", "slash");
        let sys = user("c", "sys");
        check_subscribe(
            file,
            &[
                (all, "#", true),
                (all, "+", true),
                (all, "a/+/#", true),
                (all, "$SYS/#", false), // `#` does not match `$` topics
                (all, "$SYS/x", false),
                (all, "$share/g/#", true),
                (plus, "#", true), // `+/#` matches every topic `#` does
                (plus, "+", true),
                (plus, "a", true),
                (plus, "$SYS/x", false),
                (slash, "#", false), // `/#` does not match `a`
                (slash, "/#", true),
                (slash, "/+", true),
                (slash, "+", false),
                (sys, "$SYS/#", true),
                (sys, "$SYS/+/x", true),
                (sys, "$SYS", true),
                (sys, "#", false),
                (sys, "+/x", false),
            ],
        );
    }

    /// Every filter of up to two levels (plus an optional `#`) over a small alphabet, against
    /// every topic of up to four levels over the same alphabet and one more name: topic matching
    /// agrees with `topic_matches`, and "covers" is exactly "every topic the subscription
    /// matches, the entry matches too".
    #[test]
    fn covering_is_exact_on_a_small_universe() {
        let names = ["a", "$s", ""];
        let mut filters = vec!["#".to_owned()];
        let mut levels: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        levels.push("+".to_owned());
        for a in &levels {
            filters.push(a.clone());
            for b in &levels {
                filters.push(format!("{a}/{b}"));
            }
        }
        let with_hash: Vec<String> = filters
            .iter()
            .filter(|f| *f != "#")
            .map(|f| format!("{f}/#"))
            .collect();
        filters.extend(with_hash);
        filters.retain(|f| is_valid_filter(f));
        let mut topics: Vec<String> = Vec::new();
        let mut frontier = vec![String::new()];
        for depth in 1..=4 {
            let mut next = Vec::new();
            for prefix in &frontier {
                for n in names.iter().chain(&["z"]) {
                    let t = if depth == 1 {
                        (*n).to_owned()
                    } else {
                        format!("{prefix}/{n}")
                    };
                    next.push(t);
                }
            }
            topics.extend(next.iter().cloned());
            frontier = next;
        }
        let who = anon("c");
        for a in &filters {
            let rule = Rule::new(Grant::Read, a, false);
            for t in &topics {
                assert_eq!(
                    rule.matches_topic(t, who),
                    crate::topic_matches(a, t),
                    "{a} vs {t}"
                );
            }
            for s in &filters {
                let expected = topics
                    .iter()
                    .all(|t| !crate::topic_matches(s, t) || crate::topic_matches(a, t));
                assert_eq!(rule.covers(s, who), expected, "entry {a} covers {s}?");
            }
        }
    }

    #[test]
    fn subscriptions_with_patterns() {
        let file = "pattern read devices/%c/#\npattern read users/%u/+\n\
                    pattern deny devices/%c/private/#\n";
        check_subscribe(
            file,
            &[
                (anon("d1"), "devices/d1/#", true),
                (anon("d1"), "devices/d1/+", true),
                (anon("d1"), "devices/+/x", false),
                (anon("d1"), "devices/d2/x", false),
                (anon("d1"), "devices/d1/private/x", false),
                (anon("d1"), "devices/d1/private", false),
                (anon("+"), "devices/+/x", false),
                (anon("#"), "devices/#", false),
                (anon("+"), "devices/x/y", false), // the unsafe deny refuses everything
                (user("c", "u"), "users/u/+", true),
                (user("c", "u"), "users/+/+", false),
                (user("c", "+"), "users/+/+", false),
            ],
        );
    }

    #[test]
    fn a_file_without_entries_is_an_error() {
        let err = |text: &str| Acl::parse(text).expect_err("invalid");
        for text in ["", "# only a comment\n\n", "user alice\nuser bob\n"] {
            assert_eq!(err(text).line, None, "{text:?}");
        }
        // Only a deny is still a deliberate file.
        assert!(Acl::parse("topic deny #\n").is_ok());
    }

    #[test]
    fn parse_errors_name_the_line_and_keyword() {
        let err = |text: &str| Acl::parse(text).expect_err("invalid").to_string();
        assert_eq!(
            err("topic read a\ntopik read b\n"),
            "line 2: `topik`: unknown ACL line: expected `topic`, `pattern` or `user`"
        );
        assert_eq!(err("topic\n"), "line 1: `topic`: missing topic filter");
        assert_eq!(err("user\n"), "line 1: `user`: missing user name");
        assert_eq!(
            err("topic reed a/b\n"),
            "line 1: `topic`: expected read, write, readwrite or deny before the topic filter, \
             got `reed` (a filter containing spaces needs the access word)"
        );
        assert_eq!(
            err("topic a b\n"),
            "line 1: `topic`: expected read, write, readwrite or deny before the topic filter, \
             got `a` (a filter containing spaces needs the access word)"
        );
        for bad in ["a/#/b", "a+", "a/b#", "#/a"] {
            assert_eq!(
                err(&format!("pattern read {bad}\n")),
                format!(
                    "line 1: `pattern`: invalid topic filter `{bad}`: `+` and `#` must fill a \
                     whole level, and `#` must be the last level"
                )
            );
        }
        assert_eq!(
            err("topic read a/b # comment\n"),
            "line 1: `topic`: invalid topic filter `a/b # comment`: `+` and `#` must fill a \
             whole level, and `#` must be the last level (a `#` comment must be on a line of its \
             own)"
        );
    }

    #[test]
    fn comments_blanks_and_whitespace() {
        let (acl, warnings) =
            Acl::parse("# comment\n   # indented comment\n\n\t topic\tread   a/b  \r\n")
                .expect("valid");
        assert!(warnings.is_empty());
        assert!(acl.allows(Read, anon("c"), "a/b"));
        assert!(!acl.allows(Write, anon("c"), "a/b"));
    }

    #[test]
    fn warnings() {
        let (_, warnings) =
            Acl::parse("topic deny\npattern read all/#\npattern read ok/%c\n").expect("valid");
        let text: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "line 1: `topic`: grants read and write access to the topic `deny` itself: with \
                 one word only, the word is the topic",
                "line 2: `pattern`: the pattern `all/#` has neither %c nor %u: it applies to \
                 every client alike",
            ]
        );
    }
}

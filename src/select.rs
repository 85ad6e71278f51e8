//! Selection and name mapping: which variables are warm-started, and from which checkpoint
//! tensor (TensorFlow's `_get_grouped_variables` and the main loop of `warm_start`).

use fancy_regex::Regex;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::settings::{VarsToWarmStart, WarmStartSettings};

/// A regex with Python `re` semantics (lookahead, lookbehind and backreferences included),
/// matched either like `re.match` (anchored at the start only) or like `re.fullmatch`.
pub(crate) struct PyRegex {
    re: Regex,
    pattern: String,
    context: String,
}

impl PyRegex {
    /// `re.match(pattern, s)`: anchored at the start, not at the end.
    pub(crate) fn prefix_match(pattern: &str, context: &str) -> Result<Self> {
        Self::compile(
            pattern,
            format!(r"\A(?:{pattern}{})", end(pattern)),
            context,
        )
    }

    /// `re.fullmatch(pattern, s)`.
    pub(crate) fn full_match(pattern: &str, context: &str) -> Result<Self> {
        Self::compile(
            pattern,
            format!(r"\A(?:{pattern}{})\z", end(pattern)),
            context,
        )
    }

    fn compile(pattern: &str, anchored: String, context: &str) -> Result<Self> {
        let error = |message: String| Error::Regex {
            context: context.to_string(),
            pattern: pattern.to_string(),
            message,
        };
        not_read_otherwise_by_python(pattern).map_err(error)?;
        // Compile the pattern alone first, so that an unbalanced parenthesis cannot pair up
        // with the anchoring group.
        Regex::new(pattern).map_err(|e| error(e.to_string()))?;
        let re = Regex::new(&anchored).map_err(|e| error(e.to_string()))?;
        Ok(PyRegex {
            re,
            pattern: pattern.to_string(),
            context: context.to_string(),
        })
    }

    pub(crate) fn is_match(&self, s: &str) -> Result<bool> {
        self.re.is_match(s).map_err(|e| Error::Regex {
            context: self.context.clone(),
            pattern: self.pattern.clone(),
            message: format!("matching {s:?} failed: {e}"),
        })
    }
}

/// What ends a pattern inside the anchoring group: a newline after a verbose pattern (Python's
/// `(?x)`, a flag that Python takes only at the start), so that a comment at its end cannot
/// swallow the group's closing parenthesis.
fn end(pattern: &str) -> &'static str {
    if leading_flags(pattern).0.contains('x') {
        "\n"
    } else {
        ""
    }
}

/// The flags of the `(?aiLmsux)` groups at the start of a pattern, and where the rest begins.
fn leading_flags(pattern: &str) -> (String, usize) {
    let mut flags = String::new();
    let mut rest = pattern;
    while let Some(group) = rest.strip_prefix("(?") {
        match group.find(')') {
            Some(n) if n > 0 && group[..n].chars().all(|c| "aiLmsux".contains(c)) => {
                flags.push_str(&group[..n]);
                rest = &group[n + 1..];
            }
            _ => break,
        }
    }
    (flags, pattern.len() - rest.len())
}

/// Python's tokens of a pattern (`sre_parse`'s `Tokenizer`): one character, or a backslash
/// with the character after it; with their byte offsets.
fn python_tokens(pattern: &str) -> Vec<(usize, &str)> {
    let mut tokens = Vec::new();
    let mut chars = pattern.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let end = match (c, chars.peek()) {
            ('\\', Some(&(next, n))) => {
                chars.next();
                next + n.len_utf8()
            }
            _ => at + c.len_utf8(),
        };
        tokens.push((at, &pattern[at..end]));
    }
    tokens
}

/// Refuses the constructs that Python's `re` and this regex engine both accept but read
/// differently, so that a pattern never silently selects other variables than TensorFlow:
/// - inside a character class, a `[` (here a nested class, or a POSIX class such as
///   `[[:digit:]]`; in Python a literal) and a doubled `--`, `&&` or `~~` (here a set
///   operation; in Python two literals, with a warning that their meaning may change);
/// - `\<` and `\>` (here word boundaries; in Python literals), `\b{` (here `\b{start}` and
///   its kin; in Python a word boundary, then a literal `{`) and `\N` (Python's named
///   character, `\N{DIGIT ONE}`);
/// - in a verbose pattern, a form feed or vertical tab (ignored by Python, literal here), a
///   backslash that ends a comment line (Python's comment goes on to the next line), and a
///   repetition with spaces or a comment, `{1, 2}` (here they are ignored; in Python it is
///   literal text);
/// - verbose mode turned on after the start, as in `(?x:...)`, whose comments this check
///   does not follow (Python takes a global `(?x)` only at the start).
///
/// Escaping the character (`\[`, `\-`) gives both engines the same meaning. Comments
/// (`(?#...)`, and `#` to the end of the line in a verbose pattern) are skipped as Python
/// skips them.
fn not_read_otherwise_by_python(pattern: &str) -> std::result::Result<(), String> {
    let (flags, body) = leading_flags(pattern);
    let verbose = flags.contains('x');
    let tokens = python_tokens(pattern);
    let text = |i: usize| tokens.get(i).map(|&(_, t)| t);
    let refuse_with = |at: usize, what: &str, why: &str, advice: &str| {
        Err(format!(
            "{what:?} at byte {at} of the pattern {why}; {advice}"
        ))
    };
    let refuse = |at: usize, what: &str, why: &str| {
        refuse_with(at, what, why, "escape it with a backslash or rewrite it")
    };
    let mut i = tokens.partition_point(|&(at, _)| at < body);
    while let Some((at, t)) = tokens.get(i).copied() {
        i += 1;
        match t {
            "[" => {
                // `]` right after `[` or `[^` is a member, not the end
                i += usize::from(text(i) == Some("^"));
                i += usize::from(text(i) == Some("]"));
                while let Some((at, t)) = tokens.get(i).copied() {
                    i += 1;
                    match t {
                        "]" => break,
                        "[" => {
                            return refuse(
                                at,
                                t,
                                "is a nested class inside a character class here, a literal \
                                 in Python",
                            )
                        }
                        "-" | "&" | "~" if text(i) == Some(t) => {
                            return refuse(
                                at,
                                &t.repeat(2),
                                "is a set operation inside a character class here, two \
                                 literals in Python",
                            )
                        }
                        _ => {}
                    }
                }
            }
            "(" if text(i) == Some("?") && text(i + 1) == Some("#") => {
                // a comment, to the next `)`
                while text(i).is_some_and(|t| t != ")") {
                    i += 1;
                }
                i += 1;
            }
            "(" if text(i) == Some("?") => {
                // inline flags, `(?flags)` or `(?flags-flags:...)`
                let letters: String = (i + 1..)
                    .map_while(|j| text(j).filter(|t| t.len() == 1 && t != &")" && t != &":"))
                    .collect();
                let on = letters.split('-').next().unwrap_or_default();
                if on.contains('x') && on.chars().all(|c| c.is_ascii_alphabetic()) {
                    return refuse(
                        at,
                        &format!("(?{letters}"),
                        "turns on verbose mode after the start, which this check does not \
                         follow (put `(?x)` at the start)",
                    );
                }
            }
            "#" if verbose => {
                // a comment, to the end of the line
                while let Some((at, t)) = tokens.get(i).copied() {
                    i += 1;
                    match t {
                        "\n" => break,
                        "\\\n" => {
                            return refuse(
                                at,
                                "\\",
                                "ends a comment line: Python goes on with the comment on \
                                 the next line, this engine does not",
                            )
                        }
                        _ => {}
                    }
                }
            }
            "\\<" | "\\>" => {
                return refuse_with(
                    at,
                    t,
                    &format!("is a word boundary here, a literal {:?} in Python", &t[1..]),
                    "write it without the backslash",
                )
            }
            "\\b" if text(i) == Some("{") => {
                return refuse_with(
                    at,
                    "\\b{",
                    "is a special word boundary here (`\\b{start}`, ...), a word boundary \
                     followed by a literal `{` in Python",
                    "write `\\b\\{` for the latter",
                )
            }
            "\\N" => {
                return refuse_with(
                    at,
                    t,
                    "is Python's named character (`\\N{...}`), which this engine does not \
                     read so",
                    "write the character itself",
                )
            }
            "{" if verbose => {
                // `{1, 2}` or `{1,#c\n2}`: a repetition here (spaces and comments ignored),
                // literal text in Python, which reads a repetition without them only
                let inside: Vec<&str> =
                    (i..).map_while(|j| text(j).filter(|t| *t != "}")).collect();
                let closed = text(i + inside.len()) == Some("}");
                let (mut core, mut ignored, mut comment) = (String::new(), false, false);
                for t in &inside {
                    match *t {
                        "\n" if comment => comment = false,
                        _ if comment => {}
                        "#" => (comment, ignored) = (true, true),
                        " " | "\t" | "\n" | "\r" => ignored = true,
                        _ => core.push_str(t),
                    }
                }
                let counted = !core.is_empty()
                    && core.bytes().all(|b| b.is_ascii_digit() || b == b',')
                    && core.matches(',').count() <= 1;
                if closed && counted && ignored {
                    return refuse_with(
                        at,
                        &format!("{{{}}}", inside.concat()),
                        "is a repetition here (spaces and comments ignored in a verbose \
                         pattern), literal text in Python",
                        "remove the spaces for a repetition, or escape the brace",
                    );
                }
            }
            "\u{b}" | "\u{c}" if verbose => {
                return refuse(
                    at,
                    t,
                    "is ignored by Python in a verbose pattern, not here (write `\\v` or `\\f` \
                     for the character)",
                )
            }
            _ => {}
        }
    }
    Ok(())
}

/// What happens to a selected variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Copied unchanged from the checkpoint (`init_from_checkpoint`).
    Copy,
    /// Remapped by vocabulary (`_warm_start_var_with_vocab`).
    Remap,
    /// Selected but left alone (`vars_to_warm_start` is `None`/`""`/`[]` and no vocabulary).
    None,
}

/// A selected variable: which of its partitions, from which checkpoint tensor, how.
#[derive(Clone, Debug)]
pub(crate) struct Selected {
    /// Index into the model's variables.
    pub(crate) variable: usize,
    /// Indices of the selected partitions (all of them unless a regex picked some).
    pub(crate) partitions: Vec<usize>,
    /// For each selected partition, how many times TensorFlow holds it: the number of
    /// patterns of a list that match its TensorFlow name (1 for a match on the plain name
    /// only). A partition held twice is not a lone partition, and its rows count twice in an
    /// axis-1 selection (see `plan.rs`).
    pub(crate) times: Vec<usize>,
    /// The checkpoint tensor name.
    pub(crate) prev_name: String,
    pub(crate) action: Action,
}

/// Selects variables as `warm_start` does and maps them to checkpoint names. Refuses unused
/// keys of `var_name_to_prev_var_name` and `var_name_to_vocab_info`, listing the viable names.
pub(crate) fn select(settings: &WarmStartSettings, model: &Model) -> Result<Vec<Selected>> {
    let context = "vars_to_warm_start";
    let (patterns, trainable_only) = match &settings.vars_to_warm_start {
        VarsToWarmStart::Regex(p) => (vec![PyRegex::prefix_match(p, context)?], true),
        VarsToWarmStart::Regexes(ps) => (
            ps.iter()
                .map(|p| PyRegex::prefix_match(p, context))
                .collect::<Result<_>>()?,
            false,
        ),
        VarsToWarmStart::OnlyVocab => (vec![PyRegex::prefix_match("", context)?], true),
    };
    let copies = settings.vars_to_warm_start.copies_vocabless();

    let mut selected = Vec::new();
    for (v, var) in model.variables().iter().enumerate() {
        if trainable_only && !var.trainable() {
            continue;
        }
        let (mut partitions, mut times) = (Vec::new(), Vec::new());
        for (p, part) in var.partitions().iter().enumerate() {
            // TensorFlow's matches: on the partition's graph name, once per pattern
            let mut tf = 0;
            for re in &patterns {
                tf += usize::from(re.is_match(&part.graph_name())?);
            }
            // else warmstart's own: on the plain name
            let mut plain = false;
            if tf == 0 {
                for re in &patterns {
                    if re.is_match(var.name())? {
                        plain = true;
                        break;
                    }
                }
            }
            if tf > 0 || plain {
                partitions.push(p);
                times.push(tf.max(1));
            }
        }
        if partitions.is_empty() {
            continue;
        }
        let prev = settings
            .var_name_to_prev_var_name
            .get(var.name())
            .filter(|p| !p.is_empty());
        let action = if settings.var_name_to_vocab_info.contains_key(var.name()) {
            Action::Remap
        } else if copies {
            Action::Copy
        } else {
            Action::None
        };
        selected.push(Selected {
            variable: v,
            partitions,
            times,
            prev_name: prev.cloned().unwrap_or_else(|| var.name().to_string()),
            action,
        });
    }

    let viable: Vec<String> = selected
        .iter()
        .map(|s| model.variables()[s.variable].name().to_string())
        .collect();
    // A key is used when it names a selected variable; an empty prev name never counts as
    // used, as in TensorFlow.
    let prev_unused: Vec<String> = settings
        .var_name_to_prev_var_name
        .iter()
        .filter(|(k, v)| v.is_empty() || !viable.contains(k))
        .map(|(k, _)| k.clone())
        .collect();
    if !prev_unused.is_empty() {
        return Err(Error::UnusedKeys {
            what: "prev_var_name",
            names: prev_unused,
            viable,
        });
    }
    let vocab_unused: Vec<String> = settings
        .var_name_to_vocab_info
        .keys()
        .filter(|k| !viable.contains(k))
        .cloned()
        .collect();
    if !vocab_unused.is_empty() {
        return Err(Error::UnusedKeys {
            what: "vocab",
            names: vocab_unused,
            viable,
        });
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pattern tried on the plain name selects every partition (README, "Differences from
    /// TensorFlow" 6): `emb(?!/part_0)` rejects `emb/part_0:0` but matches `emb`.
    #[test]
    fn a_match_on_the_plain_name_selects_all_partitions() {
        use crate::dtype::Dtype;
        use crate::model::{Model, Variable};
        use crate::settings::{VarsToWarmStart, WarmStartSettings};
        let model = Model::new(vec![Variable::partitioned(
            "emb",
            Dtype::F32,
            vec![4, 2],
            &[2, 2],
        )])
        .unwrap();
        let pick = |p: &str| {
            let settings = WarmStartSettings::new("ckpt")
                .vars_to_warm_start(VarsToWarmStart::Regex(p.to_string()));
            select(&settings, &model).unwrap()[0].partitions.clone()
        };
        assert_eq!(pick("emb(?!/part_0)"), [0, 1]);
        assert_eq!(pick("emb/part_1"), [1]);
    }

    #[test]
    fn python_match_semantics() {
        let r = PyRegex::prefix_match("v2[^/]", "t").unwrap();
        assert!(r.is_match("v2:0").unwrap());
        assert!(!r.is_match("v2/Momentum:0").unwrap());
        let r = PyRegex::prefix_match("^(?!.*Momentum).*", "t").unwrap();
        assert!(r.is_match("v1:0").unwrap());
        assert!(!r.is_match("v1/Momentum:0").unwrap());
        let r = PyRegex::prefix_match(".*(?<!Momentum)$", "t").unwrap();
        assert!(r.is_match("v1").unwrap());
        assert!(!r.is_match("v1/Momentum").unwrap());
        let r = PyRegex::full_match("bn/moving_.*", "t").unwrap();
        assert!(r.is_match("bn/moving_mean").unwrap());
        assert!(!r.is_match("x/bn/moving_mean").unwrap());
        let r = PyRegex::full_match("global_step", "t").unwrap();
        assert!(!r.is_match("global_step_2").unwrap());
        // A union must stay inside the anchors.
        let r = PyRegex::full_match("a|b", "t").unwrap();
        assert!(!r.is_match("ab").unwrap());
    }

    /// Python's `re` and TensorFlow: `re.match("(?x) v1 # c", "v1:0")` matches, and the
    /// patterns refused below select other names in Python than this engine would.
    #[test]
    fn python_dialect() {
        let r = PyRegex::prefix_match("(?x) v1 # only v1", "t").unwrap();
        assert!(r.is_match("v1:0").unwrap());
        assert!(!r.is_match("v2:0").unwrap());
        let r = PyRegex::full_match("(?ix) V1 # only v1", "t").unwrap();
        assert!(r.is_match("v1").unwrap());
        for (p, at) in [
            ("v[[:digit:]]", "\"[\" at byte 2"),
            ("v[a-c--b]", "\"--\" at byte 5"),
            ("v[a&&b]", "\"&&\""),
            ("v[^a~~b]", "\"~~\""),
            ("(?x)v\u{c}1", "\"\\u{c}\" at byte 5"),
            ("(?x)v1 # c:\\\n|w", "\"\\\\\" at byte 11"),
            ("v(?x: 1)", "\"(?x\" at byte 1"),
            ("v(?ix)1", "\"(?ix\""),
            (r"v1\>", r#""\\>" at byte 2"#),
            (r"\<v1", r#""\\<" at byte 0"#),
            (r"\b{start}v1", r#""\\b{" at byte 0"#),
            (r"v\N{DIGIT ONE}", r#""\\N" at byte 1"#),
            ("(?x)v{1, 2}1", "\"{1, 2}\" at byte 5"),
            ("(?x)v1{ 1 }", "\"{ 1 }\""),
            ("(?x)v{1,#c\n2}1", "\"{1,#c\\n2}\""),
        ] {
            match PyRegex::prefix_match(p, "vars_to_warm_start") {
                Err(Error::Regex { message, .. }) => {
                    assert!(message.contains(at), "{p}: {message}")
                }
                other => panic!("{p}: {:?}", other.map(|_| ())),
            }
        }
        // Escaped, read alike, or in a comment: accepted, and matching as in Python.
        for (p, yes, no) in [
            (r"v[\[1]", "v[", "v"),
            (r"v[a\-\-b]", "v-", "vc"),
            ("v[]1]", "v]", "v"),
            ("v[^]1]", "v2", "v]"),
            ("v[a-]", "v-", "vb"),
            ("(?x)v[ 1]", "v ", "v2"),
            ("(?x)v[#1]", "v#", "v2"),
            ("v[ 1]", "v ", "v2"),
            ("(?x) v1 # only [v1 not v2]", "v1", "v2"),
            ("(?x)v1 # see [[x]] -- &&\n", "v1", "v2"),
            ("(?#[[ x)v1", "v1", "v2"),
            ("(?x)v(?#[)1", "v1", "v2"),
            ("v(?-x:1)", "v1", "v2"),
            ("v(?i:X)", "vx", "vy"),
            ("a<b>", "a<b>", "ab"),
            (r"v\b\{", "v{", "v"),
            (r"v[\<]", "v<", "v"),
            ("(?x)v{1,2} 1", "vv1", "v 1"),
            ("v{1, 2}", "v{1, 2}", "v"),
            ("(?x)v1 # {1, 2}", "v1", "v2"),
        ] {
            let r = PyRegex::full_match(p, "t").unwrap_or_else(|e| panic!("{p}: {e}"));
            assert!(r.is_match(yes).unwrap() && !r.is_match(no).unwrap(), "{p}");
        }
        // Python syntax that fancy-regex does not know is refused (README, "Differences")
        for p in ["(?a)v1", "(?L)v1", r"v\061", r"v1\0"] {
            assert!(
                matches!(PyRegex::full_match(p, "t"), Err(Error::Regex { .. })),
                "{p}"
            );
        }
        // fancy-regex syntax that Python refuses is accepted (README, "Differences")
        for p in [r"v1\z", "(?<n>v)1", r"\p{L}1"] {
            assert!(
                PyRegex::full_match(p, "t").unwrap().is_match("v1").unwrap(),
                "{p}"
            );
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_their_context() {
        for p in ["(", "a)", "[", "*a"] {
            match PyRegex::prefix_match(p, "vars_to_warm_start") {
                Err(Error::Regex {
                    context, pattern, ..
                }) => {
                    assert_eq!(context, "vars_to_warm_start");
                    assert_eq!(pattern, p);
                }
                other => panic!("{p}: {:?}", other.map(|_| ())),
            }
        }
    }
}

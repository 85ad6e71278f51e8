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
        Self::compile(pattern, format!(r"\A(?:{pattern})"), context)
    }

    /// `re.fullmatch(pattern, s)`.
    pub(crate) fn full_match(pattern: &str, context: &str) -> Result<Self> {
        Self::compile(pattern, format!(r"\A(?:{pattern})\z"), context)
    }

    fn compile(pattern: &str, anchored: String, context: &str) -> Result<Self> {
        let error = |message: String| Error::Regex {
            context: context.to_string(),
            pattern: pattern.to_string(),
            message,
        };
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
        let mut partitions = Vec::new();
        for (p, part) in var.partitions().iter().enumerate() {
            let mut hit = false;
            for re in &patterns {
                if re.is_match(var.name())? || re.is_match(&part.graph_name())? {
                    hit = true;
                    break;
                }
            }
            if hit {
                partitions.push(p);
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

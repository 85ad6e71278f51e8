//! The plan file: a warm start described in TOML, paths relative to the file's directory.
//!
//! ```toml
//! checkpoint = "old/"                     # .safetensors file, directory of shards, or index JSON
//! model = "new_init.safetensors"          # every variable of the new model, initial values
//! output = "warm.safetensors"
//! vars_to_warm_start = ".*"               # string: one regex over trainable variables;
//!                                         # array: regexes over all; "": vocab variables only
//! non_trainable = ["global_step", ".*/Momentum"]   # full-match regexes
//!
//! [prev_var_name]
//! "input_layer/emb/embedding_weights" = "emb"
//!
//! [vocab."input_layer/emb/embedding_weights"]
//! new_vocab = "vocab_new.txt"
//! new_vocab_size = 100000
//! num_oov_buckets = 2
//! old_vocab = "vocab_old.txt"
//! old_vocab_size = -1                     # optional
//! axis = 0                                # optional
//! backup_initializer = { type = "truncated_normal", mean = 0.0, stddev = 0.01, seed = 42 }
//! ```
//!
//! Unknown keys anywhere are refused: a typo must not silently change the result.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::execute::resolve;
use crate::initializer::Initializer;
use crate::model::Model;
use crate::plan::Plan;
use crate::settings::{VarsToWarmStart, VocabInfo, WarmStartSettings};

/// A parsed plan file, paths resolved against its directory.
#[derive(Clone, Debug)]
pub struct PlanFile {
    /// The plan file itself.
    pub path: PathBuf,
    /// The warm-start settings.
    pub settings: WarmStartSettings,
    /// The new model's safetensors file.
    pub model: PathBuf,
    /// The output path, if the plan gives one.
    pub output: Option<PathBuf>,
    /// Full-match regexes of the variables outside `TRAINABLE_VARIABLES`.
    pub non_trainable: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Toml {
    checkpoint: PathBuf,
    model: PathBuf,
    output: Option<PathBuf>,
    #[serde(default)]
    vars_to_warm_start: Option<Selection>,
    #[serde(default)]
    non_trainable: Vec<String>,
    #[serde(default)]
    prev_var_name: BTreeMap<String, String>,
    #[serde(default)]
    vocab: BTreeMap<String, VocabToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VocabToml {
    new_vocab: PathBuf,
    new_vocab_size: i64,
    num_oov_buckets: i64,
    old_vocab: PathBuf,
    #[serde(default = "minus_one")]
    old_vocab_size: i64,
    #[serde(default)]
    axis: i64,
    backup_initializer: Option<Initializer>,
}

fn minus_one() -> i64 {
    -1
}

struct Selection(VarsToWarmStart);

impl<'de> Deserialize<'de> for Selection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Selection;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a regex string or an array of regex strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<Selection, E> {
                Ok(Selection(if s.is_empty() {
                    VarsToWarmStart::OnlyVocab
                } else {
                    VarsToWarmStart::Regex(s.to_string())
                }))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Selection, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    v.push(s);
                }
                Ok(Selection(VarsToWarmStart::Regexes(v)))
            }
        }
        d.deserialize_any(V)
    }
}

impl PlanFile {
    /// Reads and parses a plan file.
    pub fn read(path: impl AsRef<Path>) -> Result<PlanFile> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::input(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses plan text; relative paths are resolved against `path`'s directory.
    pub fn parse(text: &str, path: &Path) -> Result<PlanFile> {
        let toml: Toml = toml::from_str(text).map_err(|e| Error::PlanFile {
            file: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        // An empty path would silently mean the plan's own directory.
        let file = |key: &str, p: &Path| {
            if p.as_os_str().is_empty() {
                return Err(Error::PlanFile {
                    file: path.to_path_buf(),
                    message: format!("`{key}` is empty; it must name a file or directory"),
                });
            }
            Ok(resolve(base, p))
        };
        let vocab = toml
            .vocab
            .into_iter()
            .map(|(name, v)| {
                let key = |field: &str| format!("vocab.{name:?}.{field}");
                let info = VocabInfo {
                    new_vocab: file(&key("new_vocab"), &v.new_vocab)?,
                    new_vocab_size: v.new_vocab_size,
                    num_oov_buckets: v.num_oov_buckets,
                    old_vocab: file(&key("old_vocab"), &v.old_vocab)?,
                    old_vocab_size: v.old_vocab_size,
                    backup_initializer: v.backup_initializer,
                    axis: v.axis,
                };
                Ok((name, info))
            })
            .collect::<Result<_>>()?;
        Ok(PlanFile {
            path: path.to_path_buf(),
            settings: WarmStartSettings {
                ckpt_to_initialize_from: file("checkpoint", &toml.checkpoint)?,
                vars_to_warm_start: toml.vars_to_warm_start.map(|s| s.0).unwrap_or_default(),
                var_name_to_vocab_info: vocab,
                var_name_to_prev_var_name: toml.prev_var_name,
            },
            model: file("model", &toml.model)?,
            output: toml.output.map(|o| file("output", &o)).transpose()?,
            non_trainable: toml.non_trainable,
        })
    }

    /// Opens the model file and marks its non-trainable variables.
    pub fn model(&self) -> Result<Model> {
        let mut model = Model::open(&self.model)?;
        model.mark_non_trainable(&self.non_trainable)?;
        Ok(model)
    }

    /// Opens everything and plans the warm start (the plan file counts as one of its inputs).
    pub fn plan(&self) -> Result<Plan> {
        let mut plan = Plan::new(&self.settings, &self.model()?)?;
        plan.add_input(&self.path, "plan file");
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PlanFile> {
        PlanFile::parse(text, Path::new("/plans/p.toml"))
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("plan_file.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start()))
            .collect();
        let p = parse(&example).unwrap();
        assert_eq!(p.settings.ckpt_to_initialize_from, Path::new("/plans/old/"));
        assert_eq!(p.model, Path::new("/plans/new_init.safetensors"));
        let v = &p.settings.var_name_to_vocab_info["input_layer/emb/embedding_weights"];
        assert_eq!(v.new_vocab, Path::new("/plans/vocab_new.txt"));
        assert_eq!(
            (
                v.new_vocab_size,
                v.num_oov_buckets,
                v.old_vocab_size,
                v.axis
            ),
            (100000, 2, -1, 0)
        );
        assert_eq!(
            v.backup_initializer,
            Some(Initializer::TruncatedNormal {
                mean: 0.0,
                stddev: 0.01,
                seed: 42
            })
        );
        assert_eq!(
            p.settings.var_name_to_prev_var_name["input_layer/emb/embedding_weights"],
            "emb"
        );
        assert_eq!(p.non_trainable, ["global_step", ".*/Momentum"]);
    }

    #[test]
    fn selection_forms() {
        let base = "checkpoint = \"c\"\nmodel = \"m\"\n";
        let sel = |extra: &str| {
            parse(&format!("{base}{extra}"))
                .unwrap()
                .settings
                .vars_to_warm_start
        };
        assert_eq!(sel(""), VarsToWarmStart::Regex(".*".into()));
        assert_eq!(
            sel("vars_to_warm_start = \"\"\n"),
            VarsToWarmStart::OnlyVocab
        );
        assert_eq!(
            sel("vars_to_warm_start = \"a.*\"\n"),
            VarsToWarmStart::Regex("a.*".into())
        );
        assert_eq!(
            sel("vars_to_warm_start = [\"a\", \"b\"]\n"),
            VarsToWarmStart::Regexes(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            sel("vars_to_warm_start = []\n"),
            VarsToWarmStart::Regexes(vec![])
        );
        assert!(parse(&format!("{base}vars_to_warm_start = 3\n")).is_err());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_place() {
        for bad in [
            "checkpoint = \"c\"\nmodel = \"m\"\nvars_to_warmstart = \".*\"\n",
            "checkpoint = \"c\"\nmodel = \"m\"\n[vocab.x]\nnew_vocab = \"a\"\nnew_vocab_size = 1\nnum_oov_buckets = 0\nold_vocab = \"b\"\naxes = 1\n",
            "checkpoint = \"c\"\n",
            "checkpoint = \"c\"\nmodel = \"m\"\n[vocab.x]\nnew_vocab = \"a\"\nnew_vocab_size = 1\nnum_oov_buckets = 0\nold_vocab = \"b\"\nbackup_initializer = { type = \"nope\" }\n",
        ] {
            match parse(bad) {
                Err(Error::PlanFile { file, message }) => {
                    assert_eq!(file, Path::new("/plans/p.toml"));
                    assert!(message.contains("line"), "{message}");
                }
                other => panic!("{bad}: {:?}", other.map(|_| ())),
            }
        }
    }
}

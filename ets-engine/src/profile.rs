//! PRM profiles: how a process reward model wants a trajectory laid out and which two tokens
//! carry its verdict. Profiles are TOML data; the shipped ones are embedded, users may give
//! their own file.
//!
//! Three layouts exist:
//! - `step-tag` (Math-Shepherd): plain text, each step followed by a tag token; the verdict is
//!   read at the newest tag.
//! - `chat` (RLHFlow-style): a chat where each step is a user turn and earlier steps are answered
//!   with the good label; the verdict is read where the assistant answers the newest step.
//! - `judge`: any instruct model asked whether the newest step is correct; the verdict is
//!   P(good) / (P(good) + P(bad)) at the start of the answer.

use std::path::Path;

use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::error::Error;
use crate::files::{read_text, MAX_SMALL_TEXT_BYTES};
use crate::gguf_text::ChatRole;

const MATH_SHEPHERD: &str = include_str!("../profiles/math-shepherd.toml");
const RLHFLOW: &str = include_str!("../profiles/rlhflow.toml");
const JUDGE: &str = include_str!("../profiles/judge.toml");

/// Names of the shipped profiles.
pub const BUILTIN_PROFILES: [&str; 3] = ["math-shepherd", "rlhflow", "judge"];

/// How a profile lays out a trajectory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrmFormat {
    /// Plain text with a tag token after each step.
    StepTag,
    /// A chat with one user turn per step.
    Chat,
    /// A yes/no question to an instruct model.
    Judge,
}

/// A PRM profile as written in TOML (see the shipped files under `profiles/`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrmProfile {
    /// The profile's name.
    pub name: String,
    /// The layout.
    pub format: PrmFormat,
    /// The token that means "this step is good".
    pub good: String,
    /// The token that means "this step is bad".
    pub bad: String,
    /// `step-tag`: the tag after each step.
    #[serde(default)]
    pub step_tag: Option<String>,
    /// `chat` and `judge`: a system message.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// `step-tag`: text before the first step (`{problem}`). `chat`: the first user turn
    /// (`{problem}`, `{step}`).
    #[serde(default = "default_problem_template")]
    pub problem_template: String,
    /// One step (`{step}`, `{n}` = 1-based index): before its tag (`step-tag`), as a later user
    /// turn (`chat`), or in the list of previous steps (`judge`).
    #[serde(default = "default_step_template")]
    pub step_template: String,
    /// Text between steps (`step-tag`, and the previous steps of `judge`).
    #[serde(default = "default_step_joiner")]
    pub step_joiner: String,
    /// `judge`: the user turn (`{problem}`, `{previous}`, `{step}`).
    #[serde(default)]
    pub judge_template: Option<String>,
    /// `judge`: what `{previous}` says when the step is the first one.
    #[serde(default = "default_no_previous")]
    pub no_previous: String,
}

fn default_problem_template() -> String {
    "{problem}".into()
}
fn default_step_template() -> String {
    "{step}".into()
}
fn default_step_joiner() -> String {
    "\n".into()
}
fn default_no_previous() -> String {
    "(none)".into()
}

impl PrmProfile {
    /// A shipped profile by name.
    pub fn builtin(name: &str) -> Result<Self, Error> {
        let text = match name {
            "math-shepherd" => MATH_SHEPHERD,
            "rlhflow" => RLHFLOW,
            "judge" => JUDGE,
            _ => {
                return Err(Error::Profile {
                    origin: name.to_owned(),
                    message: format!(
                        "no such shipped profile (shipped: {})",
                        BUILTIN_PROFILES.join(", ")
                    ),
                })
            }
        };
        Self::from_toml(text, name)
    }

    /// A profile from a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = read_text(path, "PRM profile", MAX_SMALL_TEXT_BYTES)?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// A shipped profile if `name_or_path` names one, else the file at that path.
    pub fn named_or_file(name_or_path: &str) -> Result<Self, Error> {
        if BUILTIN_PROFILES.contains(&name_or_path) {
            Self::builtin(name_or_path)
        } else {
            Self::from_file(Path::new(name_or_path))
        }
    }

    /// Parses and checks a profile; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, Error> {
        let profile: PrmProfile = toml::from_str(text).map_err(|e| Error::Profile {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        profile.check(origin)?;
        Ok(profile)
    }

    fn check(&self, origin: &str) -> Result<(), Error> {
        let missing = |field: &str| Error::Profile {
            origin: origin.to_owned(),
            message: format!("format {:?} needs `{field}`", self.format),
        };
        match self.format {
            PrmFormat::StepTag if self.step_tag.is_none() => return Err(missing("step_tag")),
            PrmFormat::Judge if self.judge_template.is_none() => {
                return Err(missing("judge_template"))
            }
            _ => {}
        }
        for (field, value) in [("good", &self.good), ("bad", &self.bad)] {
            if value.is_empty() {
                return Err(Error::Profile {
                    origin: origin.to_owned(),
                    message: format!("`{field}` is empty"),
                });
            }
        }
        if self.good == self.bad {
            return Err(Error::Profile {
                origin: origin.to_owned(),
                message: format!("`good` and `bad` are the same string {:?}", self.good),
            });
        }
        Ok(())
    }

    /// Resolves the profile's strings to token ids; each must be exactly one token.
    pub fn resolve(&self, tokenizer: &Tokenizer) -> Result<ResolvedProfile, Error> {
        self.resolve_with(|text| {
            let enc = tokenizer.encode(text, false).map_err(Error::tokenizer)?;
            Ok((enc.get_ids().to_vec(), enc.get_tokens().to_vec()))
        })
    }

    /// [`PrmProfile::resolve`] with any tokenizer: `tokenize` gives a string's ids (no special
    /// tokens added) and their pieces.
    pub fn resolve_with(
        &self,
        tokenize: impl Fn(&str) -> Result<(Vec<u32>, Vec<String>), Error>,
    ) -> Result<ResolvedProfile, Error> {
        let one = |role: &'static str, text: &str| -> Result<u32, Error> {
            let (ids, pieces) = tokenize(text)?;
            match ids.as_slice() {
                [id] => Ok(*id),
                ids => Err(Error::NotOneToken {
                    profile: self.name.clone(),
                    role,
                    text: text.to_owned(),
                    pieces,
                    ids: ids.to_vec(),
                }),
            }
        };
        let step_tag = match &self.step_tag {
            Some(tag) => Some(one("step tag", tag)?),
            None => None,
        };
        Ok(ResolvedProfile {
            good: one("good label", &self.good)?,
            bad: one("bad label", &self.bad)?,
            step_tag,
            profile: self.clone(),
        })
    }
}

/// A profile checked against one tokenizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedProfile {
    /// The profile.
    pub profile: PrmProfile,
    /// Token id of the good label.
    pub good: u32,
    /// Token id of the bad label.
    pub bad: u32,
    /// Token id of the step tag (`step-tag` layout).
    pub step_tag: Option<u32>,
}

/// What a trajectory becomes before it is tokenized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rendered {
    /// Plain text, tokenized with special tokens; it ends with the step tag.
    Text(String),
    /// Chat turns `(role, content)`, rendered by the model's template with a generation prompt.
    Chat(Vec<(ChatRole, String)>),
}

impl ResolvedProfile {
    /// Lays out `problem` and `steps` (oldest first, newest last; never empty).
    pub(crate) fn render(&self, problem: &str, steps: &[&str]) -> Rendered {
        let p = &self.profile;
        let step = |n: usize, s: &str| {
            fill(
                &p.step_template,
                &[("step", s.trim()), ("n", &n.to_string())],
            )
        };
        match p.format {
            PrmFormat::StepTag => {
                let tag = p.step_tag.as_deref().unwrap_or_default();
                let mut text = fill(&p.problem_template, &[("problem", problem)]);
                for (i, s) in steps.iter().enumerate() {
                    if i > 0 {
                        text.push_str(&p.step_joiner);
                    }
                    text.push_str(&step(i + 1, s));
                    text.push_str(tag);
                }
                Rendered::Text(text)
            }
            PrmFormat::Chat => {
                let mut turns = Vec::with_capacity(2 * steps.len() + 1);
                if let Some(system) = &p.system_prompt {
                    turns.push((ChatRole::System, system.clone()));
                }
                for (i, s) in steps.iter().enumerate() {
                    if i > 0 {
                        turns.push((ChatRole::Assistant, p.good.clone()));
                        turns.push((ChatRole::User, step(i + 1, s)));
                    } else {
                        let first = fill(
                            &p.problem_template,
                            &[("problem", problem), ("step", s.trim())],
                        );
                        turns.push((ChatRole::User, first));
                    }
                }
                Rendered::Chat(turns)
            }
            PrmFormat::Judge => {
                let (newest, earlier) = steps.split_last().map_or(("", &[][..]), |(n, e)| (*n, e));
                let previous = if earlier.is_empty() {
                    p.no_previous.clone()
                } else {
                    earlier
                        .iter()
                        .enumerate()
                        .map(|(i, s)| step(i + 1, s))
                        .collect::<Vec<_>>()
                        .join(&p.step_joiner)
                };
                let template = p.judge_template.as_deref().unwrap_or_default();
                let user = fill(
                    template,
                    &[
                        ("problem", problem.trim()),
                        ("previous", &previous),
                        ("step", newest.trim()),
                    ],
                );
                let mut turns = Vec::with_capacity(2);
                if let Some(system) = &p.system_prompt {
                    turns.push((ChatRole::System, system.clone()));
                }
                turns.push((ChatRole::User, user));
                Rendered::Chat(turns)
            }
        }
    }
}

/// Replaces each `{name}` of `template` by its value in one pass (values are not re-scanned);
/// unknown names stay as written.
pub(crate) fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let hit = after.find('}').and_then(|close| {
            let name = &after[..close];
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (close, *v))
        });
        match hit {
            Some((close, value)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_parse() {
        for name in BUILTIN_PROFILES {
            let p = PrmProfile::builtin(name).unwrap();
            assert_eq!(p.name, name);
        }
        assert_eq!(
            PrmProfile::builtin("math-shepherd")
                .unwrap()
                .step_tag
                .as_deref(),
            Some("ки")
        );
    }

    #[test]
    fn bad_profiles_name_the_problem() {
        let e = PrmProfile::from_toml(
            "name = \"x\"\nformat = \"step-tag\"\ngood = \"+\"\nbad = \"-\"",
            "x.toml",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("x.toml") && e.to_string().contains("step_tag"),
            "{e}"
        );
        let e = PrmProfile::from_toml("name = \"x\"\nformat = \"judge\"\ngood = \"Yes\"\nbad = \"Yes\"\njudge_template = \"{step}\"", "y")
            .unwrap_err();
        assert!(e.to_string().contains("same string"), "{e}");
        let e = PrmProfile::from_toml("name = 1", "z").unwrap_err();
        assert!(e.to_string().starts_with("PRM profile z:"), "{e}");
        assert!(PrmProfile::builtin("nope").is_err());
    }

    #[test]
    fn fill_is_one_pass() {
        assert_eq!(
            fill(
                "{problem} | {step} | {x}",
                &[("problem", "a {step}"), ("step", "b")]
            ),
            "a {step} | b | {x}"
        );
        assert_eq!(fill("{ {step}", &[("step", "s")]), "{ s");
    }
}

//! How a policy turns a problem into its root prompt: the system prompt every engine uses
//! unless told otherwise.

/// The system prompt the policy puts before a problem unless told otherwise.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a careful math tutor. Solve the problem step by \
step. Write each step as its own short paragraph and separate steps with a blank line. End with \
a last step of the form \"The answer is: <answer>\".";

/// How the policy turns a problem into the root prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOptions {
    /// System message; `None` sends the user message alone (the chat template's default).
    pub system_prompt: Option<String>,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self {
            system_prompt: Some(DEFAULT_SYSTEM_PROMPT.to_owned()),
        }
    }
}

//! The pure steps of one request, in the order the pipeline runs them: `plan` (classify the
//! request from what it touches and ask the policy where it may go), and `assemble` the prompt with retrieved
//! passages as clearly delimited, numbered sources.
//!
//! No IO and no model calls: the server's pipeline feeds these functions values and acts on the
//! values they return.

mod plan;
mod prompt;

pub use plan::{plan, Plan, PlanRequest};
pub use prompt::{assemble, citations, last_user_text, neutralise, Assembled, PromptBudget, SYSTEM_PROMPT};

//! Everything tokenwatch shows: the engine decides ([`tokenwatch_core::finding::Finding`],
//! [`tokenwatch_core::notice::Notice`]), this crate writes it down for people and machines.
//!
//! - [`report`]: the report document (JSON) and the terminal table, markdown and CSV made from it;
//! - [`html`]: the self-contained HTML page;
//! - [`sns`]: a notice as SNS publishes it (subject, one message per protocol, message attributes, the
//!   AWS Chatbot form, the digest);
//! - [`text`]: which characters may reach a screen as they are, for every renderer and the CLI's messages.
//!
//! Times become text here and nowhere before; every value that comes from an event is cleaned and
//! escaped for the channel it goes to. Nothing here decides anything.

pub mod explain;
pub mod html;
pub mod nearmiss;
pub mod report;
pub mod sns;
pub mod table;
pub mod text;

pub use report::{Document, Group, Made};

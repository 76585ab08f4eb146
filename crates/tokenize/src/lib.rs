//! The tokenizer.

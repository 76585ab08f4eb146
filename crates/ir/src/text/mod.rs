//! The `.sg` text format: parser and printer (see docs/ir-format.md).

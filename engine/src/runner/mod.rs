//! Running scripts on sites: one site at a time ([`execute`]), and later the fan-out of
//! one script to many sites with the job lifecycle, backups and retries.

pub mod diff;
pub mod execute;
pub mod fanout;
pub mod rollback;

//! The search driver.

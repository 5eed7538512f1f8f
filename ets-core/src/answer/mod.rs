//! Answers: extraction from step text, MATH/GSM8K grading, voting over finished trajectories.

//! Embedded storage for vmpulse.

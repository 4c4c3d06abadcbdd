//! Typed ConversionReview routing between the versions of a CRD, and merged multi-version CRDs.

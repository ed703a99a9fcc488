//! Region similarity J: the Jaccard index (IoU) of two binary masks.

use super::MetricsError;

/// Region similarity J (Jaccard index, IoU) of two binary masks:
/// |pred ∧ gt| / |pred ∨ gt|, and 1.0 when both masks are empty (the
/// toolkit's `db_eval_iou` / `batched_jaccard`).
///
/// The masks may be of any shape; only their lengths must agree, otherwise
/// [`MetricsError::LengthMismatch`] is returned.
pub fn jaccard(pred: &[bool], gt: &[bool]) -> Result<f64, MetricsError> {
    if pred.len() != gt.len() {
        return Err(MetricsError::LengthMismatch {
            pred: pred.len(),
            gt: gt.len(),
        });
    }
    let (mut inter, mut union) = (0u64, 0u64);
    for (&p, &g) in pred.iter().zip(gt) {
        inter += u64::from(p & g);
        union += u64::from(p | g);
    }
    Ok(if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::mask;
    use super::*;

    #[test]
    fn jaccard_4x4_by_hand() {
        // pred: a 3x2 block (6 px); gt: an 8-px shape overlapping it on 4 px.
        let (p, _, _) = mask(&["###.", "###.", "....", "...."]);
        let (g, _, _) = mask(&[".##.", ".###", ".###", "...."]);
        // intersection: (1,0),(2,0),(1,1),(2,1) = 4
        // union: pred 6 + gt 8 - 4 = 10
        assert_eq!(jaccard(&p, &g).unwrap(), 0.4);
        assert_eq!(jaccard(&g, &p).unwrap(), 0.4);
        assert_eq!(jaccard(&p, &p).unwrap(), 1.0);
        let none = vec![false; 16];
        assert_eq!(jaccard(&p, &none).unwrap(), 0.0);
    }

    #[test]
    fn jaccard_both_empty_is_one() {
        assert_eq!(jaccard(&[false; 16], &[false; 16]).unwrap(), 1.0);
        assert_eq!(jaccard(&[], &[]).unwrap(), 1.0);
    }
}

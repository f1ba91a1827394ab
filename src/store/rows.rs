//! Statements that carry many rows at once: one round trip for a batch
//! instead of one per row. Each row count has its own text, built once, so
//! every connection prepares it once and reuses it.

/// Most rows one statement carries; longer lists go in chunks of this size.
pub(super) const CHUNK: usize = 64;

/// A statement for 1 to [`CHUNK`] rows of `width` parameters each.
pub(super) struct MultiRow {
    by_rows: Vec<String>,
}

impl MultiRow {
    /// For each row count `n`, `build(n)` writes the statement.
    pub(super) fn per_rows(build: impl Fn(usize) -> String) -> Self {
        MultiRow {
            by_rows: (1..=CHUNK).map(build).collect(),
        }
    }

    /// For each row count `n`, `build` writes the statement around `list(n)`.
    fn new(list: impl Fn(usize) -> String, build: impl Fn(&str) -> String) -> Self {
        Self::per_rows(|n| build(&list(n)))
    }

    /// `head VALUES (...), (...) tail`, each tuple of `width` parameters.
    pub(super) fn values(head: &str, width: usize, tail: &str) -> Self {
        Self::new(
            |n| tuples(1, n, width),
            |list| format!("{head} VALUES {list} {tail}").trim_end().to_string(),
        )
    }

    /// `build(tuples)` for statements that place the tuples themselves (an
    /// `UPDATE ... FROM (VALUES ...)`).
    pub(super) fn around_tuples(width: usize, build: impl Fn(&str) -> String) -> Self {
        Self::new(|n| tuples(1, n, width), build)
    }

    /// `build(list)` with a flat list of one parameter per row (an `IN (...)`).
    pub(super) fn around_list(build: impl Fn(&str) -> String) -> Self {
        Self::new(|n| numbered(1, n), build)
    }

    /// The statement for `rows` rows (1 to [`CHUNK`]).
    pub(super) fn sql(&self, rows: usize) -> &str {
        &self.by_rows[rows - 1]
    }
}

/// Executes the [`MultiRow`] statement `$statement` on `$conn` over `$rows`,
/// [`CHUNK`] rows at a time, binding each row to `$query` with `$bind`.
macro_rules! execute_in_chunks {
    ($conn:expr, $statement:expr, $rows:expr, |$query:ident, $row:pat_param| $bind:expr) => {
        for chunk in $rows.chunks($crate::store::rows::CHUNK) {
            let mut $query = sqlx::query($statement.sql(chunk.len()));
            for $row in chunk {
                $query = $bind;
            }
            $query.execute(&mut *$conn).await?;
        }
    };
}
pub(super) use execute_in_chunks;

/// `($first, ...), ($first+width, ...)`: `rows` tuples of `width` numbered
/// parameters.
pub(super) fn tuples(first: usize, rows: usize, width: usize) -> String {
    (0..rows)
        .map(|row| format!("({})", numbered(first + row * width, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$first, $first+1, ...`: `count` numbered parameters.
pub(super) fn numbered(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::{CHUNK, MultiRow};

    #[test]
    fn every_row_count_has_as_many_parameters_as_its_rows_need() {
        let insert = MultiRow::values("INSERT INTO t (a, b, c)", 3, "ON CONFLICT DO NOTHING");
        let update = MultiRow::around_tuples(2, |t| format!("UPDATE t SET b = v.column2 FROM (VALUES {t}) AS v"));
        let select = MultiRow::around_list(|l| format!("SELECT a FROM t WHERE a IN ({l})"));
        for n in 1..=CHUNK {
            assert!(insert.sql(n).starts_with("INSERT INTO t (a, b, c) VALUES ($1, $2, $3)"));
            assert!(insert.sql(n).ends_with(&format!("${}) ON CONFLICT DO NOTHING", 3 * n)));
            assert!(!insert.sql(n).contains(&format!("${},", 3 * n)));
            assert!(update.sql(n).ends_with(&format!("${}, ${})) AS v", 2 * n - 1, 2 * n)));
            assert!(select.sql(n).ends_with(&format!("${n})")));
            assert!(!select.sql(n).contains(&format!("${}", n + 1)));
        }
        assert_eq!(insert.sql(2).matches('(').count(), 3);
    }
}

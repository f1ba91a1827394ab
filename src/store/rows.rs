//! Statements that carry many rows at once: one round trip for a batch
//! instead of one per row. Each row count has its own text, built once, so
//! every connection prepares it once and reuses it.

/// Most rows one statement carries; longer lists go in pieces of this size.
pub(super) const CHUNK: usize = 64;

/// A statement for 1 to [`CHUNK`] rows of `width` parameters each (or only
/// for the powers of two among them).
pub(super) struct MultiRow {
    by_rows: Vec<Option<String>>,
}

impl MultiRow {
    /// For each row count `n`, `build(n)` writes the statement.
    pub(super) fn per_rows(build: impl Fn(usize) -> String) -> Self {
        MultiRow {
            by_rows: (1..=CHUNK).map(|n| Some(build(n))).collect(),
        }
    }

    /// Keeps only the statements for a power of two rows: a connection
    /// prepares and holds 7 statements instead of 64, and a list goes in a few
    /// pieces (37 rows: 32, 4 and 1).
    pub(super) fn in_powers_of_two(mut self) -> Self {
        for (i, sql) in self.by_rows.iter_mut().enumerate() {
            if !(i + 1).is_power_of_two() {
                *sql = None;
            }
        }
        self
    }

    /// `rows` cut into pieces, in order, each with a statement of its size.
    pub(super) fn pieces<'a, T>(&self, mut rows: &'a [T]) -> Vec<&'a [T]> {
        let mut pieces = Vec::new();
        while !rows.is_empty() {
            let mut n = rows.len().min(CHUNK);
            if self.by_rows[n - 1].is_none() {
                n = 1 << n.ilog2();
            }
            let (piece, rest) = rows.split_at(n);
            pieces.push(piece);
            rows = rest;
        }
        pieces
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

    /// The statement for `rows` rows: a size that [`MultiRow::pieces`] cuts.
    pub(super) fn sql(&self, rows: usize) -> &str {
        self.by_rows[rows - 1]
            .as_deref()
            .expect("pieces are cut to the sizes that have statements")
    }
}

/// Executes the [`MultiRow`] statement `$statement` on `$conn` over `$rows`,
/// piece by piece, binding each row to `$query` with `$bind`.
macro_rules! execute_in_chunks {
    ($conn:expr, $statement:expr, $rows:expr, |$query:ident, $row:pat_param| $bind:expr) => {
        for chunk in $statement.pieces(&$rows) {
            let mut $query = sqlx::query($statement.sql(chunk.len()));
            for $row in chunk {
                $query = $bind;
            }
            $query.execute(&mut *$conn).await?;
        }
    };
}
pub(super) use execute_in_chunks;

/// Runs a [`MultiRow`] statement that answers rows over `$rows`, piece by piece,
/// and collects every row it answers (of type `$out`).
macro_rules! fetch_in_chunks {
    ($conn:expr, $statement:expr, $rows:expr, $out:ty, |$query:ident, $row:pat_param| $bind:expr) => {{
        let mut answered: Vec<$out> = Vec::new();
        for chunk in $statement.pieces(&$rows) {
            let mut $query = sqlx::query_as::<_, $out>($statement.sql(chunk.len()));
            for $row in chunk {
                $query = $bind;
            }
            answered.extend($query.fetch_all(&mut *$conn).await?);
        }
        answered
    }};
}
pub(super) use fetch_in_chunks;

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

    #[test]
    fn pieces_keep_every_row_in_order_and_have_a_statement_each() {
        let every = MultiRow::values("INSERT INTO t (a)", 1, "");
        let few = MultiRow::values("INSERT INTO t (a)", 1, "").in_powers_of_two();
        for len in 0..=3 * CHUNK + 5 {
            let rows: Vec<usize> = (0..len).collect();
            for (statement, most) in [(&every, len.div_ceil(CHUNK)), (&few, len / CHUNK + 7)] {
                let pieces = statement.pieces(&rows);
                assert_eq!(pieces.concat(), rows);
                assert!(pieces.len() <= most, "{len} rows in {} pieces", pieces.len());
                for piece in pieces {
                    assert!(statement.sql(piece.len()).ends_with(&format!("(${})", piece.len())));
                }
            }
        }
        assert_eq!(
            few.pieces(&[0; 37]).iter().map(|p| p.len()).collect::<Vec<_>>(),
            [32, 4, 1]
        );
    }
}

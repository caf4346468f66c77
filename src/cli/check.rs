//! `orchc check`.

use super::CheckArgs;

pub fn run(_args: CheckArgs) -> i32 {
    super::exit::OK
}

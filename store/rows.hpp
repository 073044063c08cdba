// Reading a query's rows: the one loop every reader of a database needs.
#pragma once

#include <string_view>

#include "store/database.hpp"

namespace depgraph {

// Hands each row of `stmt` to `row`; a read failure names the file.
template <class RowFn>
Status for_each_row(const Database& db, Statement& stmt, RowFn&& row) {
    for (;;) {
        auto more = stmt.step();
        if (!more) return Error{"cannot read " + db.path() + ": " + more.error().message};
        if (!*more) return ok_status();
        row(stmt);
    }
}

template <class RowFn>
Status for_each_row(Database& db, std::string_view sql, RowFn&& row) {
    auto stmt = db.prepare(sql);
    if (!stmt) return stmt.error();
    return for_each_row(db, *stmt, row);
}

}  // namespace depgraph

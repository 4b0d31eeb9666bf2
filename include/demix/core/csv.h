#pragma once

// CSV tables of numbers (the posterior reports of demix eval --mixture): a header row, then one
// row per label. Numbers are written as "%.6f"; a cell holding a comma, a quote or a line break is
// quoted (RFC 4180).

#include <string>
#include <vector>

namespace demix {

// `corner` heads the label column, `columns` the value columns; `values[i]` is the row of
// `labels[i]`.
std::string csv_table(const std::string& corner, const std::vector<std::string>& columns,
                      const std::vector<std::string>& labels,
                      const std::vector<std::vector<double>>& values);

}  // namespace demix

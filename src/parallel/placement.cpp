#include "demix/parallel/placement.h"

#include <algorithm>

#include "demix/core/error.h"

namespace demix::parallel {

Placement::Placement(int world_size, int n_experts) : world_(world_size), experts_(n_experts) {
  if (world_ < 1) throw Error("WORLD_SIZE=" + std::to_string(world_) + ": expected >= 1");
  if (experts_ < 0) throw Error("placement: negative expert count");
  if (experts_ > 0 && world_ >= experts_ && world_ % experts_ != 0)
    throw Error("WORLD_SIZE=" + std::to_string(world_) + " is not divisible by the " +
                std::to_string(experts_) +
                " experts (data.domains): each expert needs an equal "
                "group of ranks");
  if (experts_ > 0 && world_ < experts_ && experts_ % world_ != 0)
    throw Error("the " + std::to_string(experts_) +
                " experts (data.domains) are not divisible by "
                "WORLD_SIZE=" +
                std::to_string(world_) + ": each rank must host as many experts");
}

std::vector<int> Placement::experts_on(int rank) const {
  std::vector<int> out;
  if (experts_ == 0) return out;
  if (world_ >= experts_) return {rank / (world_ / experts_)};
  const int per_rank = experts_ / world_;
  for (int e = rank * per_rank; e < (rank + 1) * per_rank; ++e) out.push_back(e);
  return out;
}

std::vector<int> Placement::ranks_of(int expert) const {
  if (world_ < experts_) return {expert / (experts_ / world_)};
  const int group = world_ / experts_;
  std::vector<int> out;
  for (int r = expert * group; r < (expert + 1) * group; ++r) out.push_back(r);
  return out;
}

int Placement::replica_of(int rank, int expert) const {
  const auto ranks = ranks_of(expert);
  const auto it = std::find(ranks.begin(), ranks.end(), rank);
  return it == ranks.end() ? -1 : int(it - ranks.begin());
}

std::string Placement::describe() const {
  std::string out =
      "placement: " + std::to_string(world_) + " ranks, " + std::to_string(experts_) + " experts\n";
  for (int r = 0; r < world_; ++r) {
    out += "  rank " + std::to_string(r) + ":";
    if (experts_ == 0) out += " shared only (dense)";
    for (int e : experts_on(r))
      out += " expert " + std::to_string(e) + " (replica " + std::to_string(replica_of(r, e)) +
             "/" + std::to_string(ranks_of(e).size()) + ")";
    out += "\n";
  }
  return out;
}

}  // namespace demix::parallel

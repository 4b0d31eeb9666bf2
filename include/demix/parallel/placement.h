#pragma once

// Which rank hosts which expert. A value type, built once from (world size, expert count), with
// no communication. Ranks form contiguous groups:
//
//   W >= E (W divisible by E): expert e lives on ranks [e*W/E, (e+1)*W/E); each rank hosts one.
//     W=8, E=4:  rank 0 1 | 2 3 | 4 5 | 6 7   ->   expert 0 | 1 | 2 | 3
//   W <  E (E divisible by W): rank r hosts experts [r*E/W, (r+1)*E/W); each expert has one rank.
//     W=2, E=8:  rank 0 -> experts 0-3, rank 1 -> experts 4-7
//   E = 0 (a dense model): no experts; every rank is a data-parallel replica.
//
// Each rank draws k sequences per hosted domain; a domain's rows are split among its replicas
// (`replica_of`), so the global batch holds k * W/E sequences per domain (k for W < E).

#include <string>
#include <vector>

namespace demix::parallel {

class Placement {
 public:
  Placement(int world_size, int n_experts);  // throws Error on an uneven split

  int world_size() const { return world_; }
  int n_experts() const { return experts_; }
  std::vector<int> experts_on(int rank) const;
  std::vector<int> ranks_of(int expert) const;
  int leader_of(int expert) const { return ranks_of(expert).front(); }
  // Position of `rank` among the ranks of `expert` (0 for the leader), -1 if it does not host it.
  int replica_of(int rank, int expert) const;
  int replicas() const { return experts_ == 0 ? world_ : std::max(1, world_ / experts_); }
  std::string describe() const;  // one line per rank

 private:
  int world_, experts_;
};

}  // namespace demix::parallel

#pragma once

// `demix cluster`: domains discovered instead of labelled (c-BTM). The training documents of an
// encoded corpus (demix data) are read back from their token splits, a random sample fits the
// features and a balanced k-means, and then every document is featurised and assigned chunk by
// chunk in parallel: the token splits are memory-mapped, so memory stays bounded by the chunk
// and the sample, whatever the corpus size. Labels, if the corpus has them, only measure purity.

#include <string>

#include "demix/cluster/router.h"
#include "demix/core/config.h"

namespace demix::cluster {

// Clusters the training documents of `config` into config.cluster.k domains and writes, under
// `out_dir` (which must not exist; built under a temporary name, then renamed into place):
//   cluster_00/ ... train.txt, valid.txt, test.txt  training documents by balanced assignment
//                   (sizes within 1), held-out ones to the nearest centre;
//   <domain>/valid.txt, test.txt                     each source domain's held-out text, to
//                                                    evaluate the cluster model on;
//   MANIFEST.json, purity.md   sizes, top terms, the cluster x label table and its NMI;
//   router.safetensors         the cluster router;
//   config.yaml                `config` with these domains, ready for demix data and train.
void write_cluster_corpus(const Config& config, const std::string& out_dir);

// A router for a model trained on labelled domains: the features fitted as demix cluster fits
// them, and each training domain's centre the mean features of its training documents.
ClusterRouter fit_domain_router(const Config& config);

}  // namespace demix::cluster

// The image store: images, their names, layers and blobs in state.db, blob
// files under blobs/sha256/, unpacked layers under layers/<chain id>/diff.
// Every change is one transaction; files are in place (written, synced,
// renamed) before the transaction that makes them visible, are deleted only
// after the one that drops them, and `open` removes whatever a crash left.
#pragma once

#include "storage/sqlite.hpp"

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace berth::storage {

struct layer_record {
  std::string chain_id;  ///< hex; identifies the unpacked layer
  std::string diff_id;   ///< "sha256:..." of the uncompressed tar
  std::string blob;      ///< "sha256:..." of the compressed blob
  std::string media_type;
  int64_t size = 0;      ///< unpacked bytes
};

struct image_record {
  std::string id; ///< hex of the config digest
  std::vector<std::string> names;
  std::string manifest_digest; ///< "sha256:..."
  std::string manifest_type;
  std::string created; ///< RFC 3339, from the config
  int64_t size = 0;    ///< sum of the layers' unpacked sizes
  std::vector<layer_record> layers; ///< bottom first
  std::map<std::string, std::string> labels; ///< from the configuration
};

/// A blob an image uses, as image_blobs records it.
struct blob_use {
  std::string digest;     ///< "sha256:..."
  std::string chain_id;   ///< the layer it carries; empty for others
  std::string media_type; ///< as the image's manifest names it
};

enum class lookup { found, not_found, ambiguous };

class image_store {
public:
  /// `count`, when given, is where the store keeps its number of images
  /// (see `count`); else the store keeps its own.
  explicit image_store(std::shared_ptr<std::atomic<int64_t>> count = {});

  /// Opens the store under `root`, creating it, and cleans up what an
  /// interrupted operation left behind.
  bool open(const std::string& root, std::string& err);

  const std::string& root() const { return root_; }
  std::string blob_path(const std::string& digest) const;
  std::string layer_path(const std::string& chain_id) const;
  /// A fresh directory for downloads and unpacking, removed on `open`.
  std::string make_temp_dir(std::string& err) const;
  /// Puts everything below `dir` (a temporary directory) on disk, with one
  /// syncfs of the store's file system.
  bool sync_dir(const std::string& dir, std::string& err) const;
  /// Moves a verified file into the blob store (fsync unless `sync` is
  /// false because `sync_dir` did it, rename).
  bool put_blob(const std::string& digest, const std::string& file,
                std::string& err, bool sync = true);
  bool has_blob(const std::string& digest) const;
  bool has_layer(const std::string& chain_id);
  /// Moves an unpacked directory into place as layer `chain_id`; it
  /// becomes visible only with the image that uses it. `sync` as for
  /// `put_blob`.
  bool put_layer(const std::string& chain_id, const std::string& dir,
                 std::string& err, bool sync = true);

  /// Records an image (or adds names to it); names move from any image
  /// that had them. Every blob `img` names (config, manifest, layers)
  /// belongs to the image from then on, also when it was here already;
  /// all of them and its layers must be in the store.
  bool commit_image(const image_record& img, std::string& err);

  /// Resolves a reference as podman does (wire-names §6.1).
  lookup resolve(const std::string& name, image_record& out,
                 std::string& why);
  bool get(const std::string& id, image_record& out);
  std::vector<image_record> list();
  /// The number of images, set after every committed change before the
  /// call that made it returns; read without the database, so other
  /// threads may read the shared counter while the store works.
  int64_t count() const { return count_->load(); }
  /// Moves on with every committed change to images or their names
  /// (commit, tag, untag, remove): a view of the store made at one
  /// generation is current for as long as the generation stays.
  uint64_t generation() const { return generation_.load(); }

  bool tag(const std::string& id, const std::string& name, std::string& err);
  /// Removes one name; false if no image has it.
  bool untag(const std::string& name, std::string& err);
  /// Removes an image, the layers no other image uses and the blobs no
  /// other image names. A layer that stays keeps a blob of its own: when
  /// the one it recorded goes, it takes one another image has for it.
  bool remove(const std::string& id, std::string& err);

  /// Reads a blob's contents.
  bool read_blob(const std::string& digest, std::string& out,
                 std::string& err) const;

private:
  bool migrate(std::string& err);
  bool record_blobs(const std::string& id, const std::vector<blob_use>& blobs,
                    std::string& err);
  void reconcile();
  /// Moves a leftover directory into trash/ at once (a rename), for
  /// `empty_trash` to delete; removes it in place when it cannot move.
  void discard(const std::string& path, const std::string& as);
  /// Deletes what trash/ holds on a thread of its own.
  void empty_trash();
  void load(statement& s, image_record& out);
  /// After a committed change: recounts the images and moves the
  /// generation on.
  void changed();

  std::string root_;
  database db_;
  std::shared_ptr<std::atomic<int64_t>> count_;
  std::atomic<uint64_t> generation_{0};
};

/// The chain ID of a layer given its parent's chain ID ("" for the base).
std::string chain_id(const std::string& parent_chain,
                     const std::string& diff_id);

} // namespace berth::storage

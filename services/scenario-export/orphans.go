package export

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/pkg/blob"
	"github.com/avxrm/rm/services/scenario-export/internal/artifacts"
)

// commitGrace is how long a complete blob may go unreferenced: the time
// between an upload's (or a build's) last chunk and the write of the record
// that refers to it.
const commitGrace = time.Minute

// orphanBatch is how many artifact blobs SweepOrphans checks per read of
// their records.
const orphanBatch = 100

// SweepOrphans removes blobs nobody refers to: uploads and builds cut short by
// a crash, zips of exports that were deleted or rebuilt, and artifacts whose
// record was replaced by a re-upload before the old blob could be removed.
// Unfinished uploads are kept for Config.UploadGrace, since they may still be
// in progress.
func (s *Service) SweepOrphans(ctx context.Context) error {
	now := s.now()
	var dead []string
	err := s.st.EachFile(ctx, s.st.Zips, func(f blob.File) error {
		live, err := s.zipLive(ctx, f)
		if err != nil {
			return err
		}
		if !live && now.Sub(f.UploadDate) > commitGrace {
			dead = append(dead, f.ID)
		}
		return nil
	})
	var errs []error
	errs = append(errs, err)
	for _, id := range dead {
		errs = append(errs, s.st.Zips.Delete(ctx, id))
	}
	dead = dead[:0]
	// A blob's filename is its artifact's _id; the records are read a batch
	// of blobs at a time (one read per blob made each sweep a round trip
	// per artifact stored).
	var batch []blob.File
	check := func() error {
		names := make([]string, len(batch))
		for i, f := range batch {
			names[i] = f.Filename
		}
		fids, err := s.st.ArtifactFileIDs(ctx, names)
		if err != nil {
			return err
		}
		for _, f := range batch {
			if fids[f.Filename] == f.ID {
				continue
			}
			grace := commitGrace
			if f.Metadata.State != blob.StateComplete {
				grace = s.cfg.UploadGrace
			}
			if now.Sub(f.UploadDate) > grace {
				dead = append(dead, f.ID)
			}
		}
		batch = batch[:0]
		return nil
	}
	err = s.st.EachFile(ctx, s.st.Artifacts, func(f blob.File) error {
		if batch = append(batch, f); len(batch) == orphanBatch {
			return check()
		}
		return nil
	})
	if err == nil && len(batch) > 0 {
		err = check()
	}
	errs = append(errs, err)
	for _, id := range dead {
		errs = append(errs, s.st.Artifacts.Delete(ctx, id))
	}
	if len(dead) > 0 {
		s.log.Info("removed orphaned artifact blobs", "blobs", len(dead))
	}
	return errors.Join(errs...)
}

// zipLive reports whether a zip blob is an export's zip or the zip a live
// claim is writing. Its filename is "<export id>#<owner>#<claimed version>".
func (s *Service) zipLive(ctx context.Context, f blob.File) (bool, error) {
	parts := strings.Split(f.Filename, "#")
	l, err := s.st.Load(ctx, parts[0])
	if errors.Is(err, artifacts.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	e := l.Export
	if e.ZipFileID == f.ID {
		return true, nil
	}
	if len(parts) == 3 && e.Status == artifacts.StatusBuilding && e.Claim != nil && e.Claim.Owner == parts[1] &&
		strconv.FormatInt(e.Version, 10) == parts[2] {
		return true, nil
	}
	return false, nil
}

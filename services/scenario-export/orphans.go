package export

import (
	"context"
	"errors"
	"github.com/avxrm/rm/pkg/blob"
	"strconv"
	"strings"
	"time"

	"github.com/avxrm/rm/services/scenario-export/internal/artifacts"
)

// commitGrace is how long a complete blob may go unreferenced: the time
// between an upload's (or a build's) last chunk and the write of the record
// that refers to it.
const commitGrace = time.Minute

// SweepOrphans removes blobs nobody refers to: uploads and builds cut short by
// a crash, zips of exports that were deleted or rebuilt, and artifacts whose
// record was replaced by a re-upload before the old blob could be removed.
// Unfinished uploads are kept for Config.UploadGrace, since they may still be
// in progress.
func (s *Service) SweepOrphans(ctx context.Context) error {
	now := s.now()
	var dead []string
	err := s.st.Zips.Each(ctx, func(f blob.File) error {
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
	err = s.st.Artifacts.Each(ctx, func(f blob.File) error {
		fid, err := s.st.ArtifactFileID(ctx, f.Filename)
		if err != nil || fid == f.ID {
			return err
		}
		grace := commitGrace
		if f.Metadata.State != blob.StateComplete {
			grace = s.cfg.UploadGrace
		}
		if now.Sub(f.UploadDate) > grace {
			dead = append(dead, f.ID)
		}
		return nil
	})
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

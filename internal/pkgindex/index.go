package pkgindex

import (
	"cmp"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Index is the fleet's package index in memory: every distinct package
// (a unit) once, and per image key the units it holds. A query first
// selects units (tens of thousands at most), then walks the images' unit
// lists with a bit set — no per-image document is decoded.
type Index struct {
	// LastSeq is the last package-record sequence the index covers.
	LastSeq uint64

	units   []Unit
	unitIDs map[string]uint32 // built on the first Apply

	images []*Image
	byKey  map[contract.ImageKey]int
}

// Unit is one distinct package: the record's package without its layer
// (the same package in images built separately is one unit).
type Unit = contract.Package

// Image is one image key's entry.
type Image struct {
	contract.ImageKey
	// Seq is the sequence of the package record this entry came from.
	Seq            uint64
	Reference      string
	ManifestDigest string
	Scanner        contract.ScannerInfo
	AnalyzedAt     time.Time
	OS             *contract.OSInfo
	OSExtended     bool
	OSSupplier     string
	Repository     *contract.PackageRepository
	// Units are the image's packages (unit ids, sorted).
	Units []uint32
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{byKey: map[contract.ImageKey]int{}}
}

// Len is the number of image keys.
func (ix *Index) Len() int { return len(ix.byKey) }

// Units is the number of distinct packages.
func (ix *Index) Units() int { return len(ix.units) }

// Postings is the number of (image, package) pairs.
func (ix *Index) Postings() int {
	n := 0
	for _, im := range ix.images {
		if im != nil {
			n += len(im.Units)
		}
	}
	return n
}

// Unit returns a unit by id.
func (ix *Index) Unit(id uint32) *Unit { return &ix.units[id] }

// Image returns the entry of key.
func (ix *Index) Image(key contract.ImageKey) (*Image, bool) {
	i, ok := ix.byKey[key]
	if !ok {
		return nil, false
	}
	return ix.images[i], true
}

// Images calls fn with every image entry (in no particular order).
func (ix *Index) Images(fn func(*Image)) {
	for _, im := range ix.images {
		if im != nil {
			fn(im)
		}
	}
}

// unitKey identifies a unit by every field.
func unitKey(u *Unit) string {
	var b strings.Builder
	for _, s := range []string{u.Name, u.Version, u.PURL, u.Type, u.Class, u.Path, u.ID, u.RawVersion, u.Release,
		strconv.Itoa(u.Epoch), u.Arch, u.SrcName, u.SrcVersion, u.SrcRelease, strconv.Itoa(u.SrcEpoch),
		u.Modularitylabel, strings.Join(u.ContentSets, ","), u.BuildNvr, u.BuildArch, u.RepositoryClass,
		u.Relationship, strconv.FormatBool(u.Dev)} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	return b.String()
}

func (ix *Index) intern(u Unit) uint32 {
	if ix.unitIDs == nil {
		ix.unitIDs = make(map[string]uint32, len(ix.units))
		for i := range ix.units {
			ix.unitIDs[unitKey(&ix.units[i])] = uint32(i)
		}
	}
	u.LayerDigest, u.LayerDiffID = "", ""
	k := unitKey(&u)
	if id, ok := ix.unitIDs[k]; ok {
		return id
	}
	id := uint32(len(ix.units))
	ix.units = append(ix.units, u)
	ix.unitIDs[k] = id
	return id
}

// Apply takes a package record (stored at seq) into the index, replacing
// the key's previous entry.
func (ix *Index) Apply(rec contract.ImagePackages, seq uint64) {
	im := &Image{
		ImageKey: rec.ImageKey, Seq: seq, Reference: rec.Reference, ManifestDigest: rec.ManifestDigest,
		Scanner: rec.Scanner, AnalyzedAt: rec.AnalyzedAt.UTC(), OS: rec.OS, OSExtended: rec.OSExtended,
		OSSupplier: rec.OSSupplier, Repository: rec.Repository,
	}
	im.Units = make([]uint32, 0, len(rec.Packages))
	for _, p := range rec.Packages {
		im.Units = append(im.Units, ix.intern(p))
	}
	slices.Sort(im.Units)
	im.Units = slices.Compact(im.Units)
	ix.put(im)
	ix.LastSeq = max(ix.LastSeq, seq)
}

func (ix *Index) put(im *Image) {
	if i, ok := ix.byKey[im.ImageKey]; ok {
		ix.images[i] = im
		return
	}
	ix.byKey[im.ImageKey] = len(ix.images)
	ix.images = append(ix.images, im)
}

// Remove drops key's entry.
func (ix *Index) Remove(key contract.ImageKey) {
	if i, ok := ix.byKey[key]; ok {
		ix.images[i] = nil
		delete(ix.byKey, key)
	}
}

// prune drops entries whose record is older than firstSeq (expired from
// the stream).
func (ix *Index) prune(firstSeq uint64) int {
	n := 0
	for _, im := range ix.images {
		if im != nil && im.Seq < firstSeq {
			ix.Remove(im.ImageKey)
			n++
		}
	}
	return n
}

// Set is a set of unit ids.
type Set []uint64

// NewSet returns an empty set sized for the index's units.
func (ix *Index) NewSet() Set { return make(Set, (len(ix.units)+63)/64) }

// Add adds id.
func (s Set) Add(id uint32) { s[id/64] |= 1 << (id % 64) }

// Has reports whether id is in the set.
func (s Set) Has(id uint32) bool { return int(id/64) < len(s) && s[id/64]&(1<<(id%64)) != 0 }

// Empty reports whether the set has no member.
func (s Set) Empty() bool {
	for _, w := range s {
		if w != 0 {
			return false
		}
	}
	return true
}

// SelectUnits returns the units for which keep is true.
func (ix *Index) SelectUnits(keep func(*Unit) bool) Set {
	s := ix.NewSet()
	for i := range ix.units {
		if keep(&ix.units[i]) {
			s.Add(uint32(i))
		}
	}
	return s
}

// Each calls fn with every (image, unit) pair whose unit is in s, for the
// images admit accepts (nil: all), in no particular order.
func (ix *Index) Each(s Set, admit func(*Image) bool, fn func(*Image, uint32)) {
	if s.Empty() {
		return
	}
	for _, im := range ix.images {
		if im == nil || (admit != nil && !admit(im)) {
			continue
		}
		for _, id := range im.Units {
			if s.Has(id) {
				fn(im, id)
			}
		}
	}
}

// OSGroup is a set of images whose OS packages Trivy would see identically:
// same OS, repository and OS package set.
type OSGroup struct {
	Image  *Image // the first image of the group (its OS and repository)
	Units  []uint32
	Images []*Image
}

// OSGroups groups the admitted images by OS package set (images built on
// the same base share one): OS detection runs once per group.
func (ix *Index) OSGroups(admit func(*Image) bool) []*OSGroup {
	byHash := map[uint64][]*OSGroup{}
	var out []*OSGroup
	for _, im := range ix.images {
		if im == nil || im.OS == nil || (admit != nil && !admit(im)) {
			continue
		}
		var units []uint32
		for _, id := range im.Units {
			if ix.units[id].Class == contract.ClassOSPackages {
				units = append(units, id)
			}
		}
		if len(units) == 0 {
			continue
		}
		h := fnv.New64a()
		ctx := im.OS.Family + "\x00" + im.OS.Name + "\x00" + strconv.FormatBool(im.OSExtended) + "\x00" + im.OSSupplier
		if r := im.Repository; r != nil {
			ctx += "\x00" + r.Family + "\x00" + r.Release
		}
		h.Write([]byte(ctx))
		for _, id := range units {
			h.Write([]byte{byte(id), byte(id >> 8), byte(id >> 16), byte(id >> 24)})
		}
		sum := h.Sum64()
		var g *OSGroup
		for _, cand := range byHash[sum] {
			if sameOSContext(cand.Image, im) && slices.Equal(cand.Units, units) {
				g = cand
				break
			}
		}
		if g == nil {
			g = &OSGroup{Image: im, Units: units}
			byHash[sum] = append(byHash[sum], g)
			out = append(out, g)
		}
		g.Images = append(g.Images, im)
	}
	return out
}

func sameOSContext(a, b *Image) bool {
	if *a.OS != *b.OS || a.OSExtended != b.OSExtended || a.OSSupplier != b.OSSupplier {
		return false
	}
	switch {
	case a.Repository == nil && b.Repository == nil:
		return true
	case a.Repository == nil || b.Repository == nil:
		return false
	}
	return *a.Repository == *b.Repository
}

// LangUnits lists, per language package type, the distinct language
// units of the admitted images (detection is per package for them).
func (ix *Index) LangUnits(admit func(*Image) bool) map[string][]uint32 {
	seen := ix.NewSet()
	out := map[string][]uint32{}
	for _, im := range ix.images {
		if im == nil || (admit != nil && !admit(im)) {
			continue
		}
		for _, id := range im.Units {
			u := &ix.units[id]
			if u.Class != contract.ClassLangPackages || seen.Has(id) {
				continue
			}
			seen.Add(id)
			out[u.Type] = append(out[u.Type], id)
		}
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

// sortedImages returns the live entries ordered by key.
func (ix *Index) sortedImages() []*Image {
	out := make([]*Image, 0, len(ix.byKey))
	for _, im := range ix.images {
		if im != nil {
			out = append(out, im)
		}
	}
	slices.SortFunc(out, func(a, b *Image) int {
		return cmp.Or(cmp.Compare(a.Digest, b.Digest), cmp.Compare(a.Platform.String(), b.Platform.String()))
	})
	return out
}

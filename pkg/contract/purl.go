package contract

import (
	"strings"

	"github.com/package-url/packageurl-go"
)

// purlTypes maps Trivy's package types (Finding.PkgType) to package URL
// types, as Trivy's own PURL builder does.
var purlTypes = map[string]string{
	"jar": packageurl.TypeMaven, "pom": packageurl.TypeMaven, "gradle": packageurl.TypeMaven, "sbt": packageurl.TypeMaven,
	"bundler": packageurl.TypeGem, "gemspec": packageurl.TypeGem,
	"nuget": packageurl.TypeNuget, "dotnet-core": packageurl.TypeNuget, "packages-props": packageurl.TypeNuget,
	"composer": packageurl.TypeComposer, "composer-vendor": packageurl.TypeComposer,
	"python-pkg": packageurl.TypePyPi, "pip": packageurl.TypePyPi, "pipenv": packageurl.TypePyPi,
	"poetry": packageurl.TypePyPi, "uv": packageurl.TypePyPi,
	"gobinary": packageurl.TypeGolang, "gomod": packageurl.TypeGolang,
	"npm": packageurl.TypeNPM, "node-pkg": packageurl.TypeNPM, "yarn": packageurl.TypeNPM, "pnpm": packageurl.TypeNPM, "bun": packageurl.TypeNPM,
	"rustbinary": packageurl.TypeCargo, "cargo": packageurl.TypeCargo,
	"alpine": packageurl.TypeApk, "wolfi": packageurl.TypeApk, "chainguard": packageurl.TypeApk, "minimos": packageurl.TypeApk,
	"debian": packageurl.TypeDebian, "ubuntu": packageurl.TypeDebian, "echo": packageurl.TypeDebian,
	"redhat": packageurl.TypeRPM, "centos": packageurl.TypeRPM, "rocky": packageurl.TypeRPM, "alma": packageurl.TypeRPM,
	"amazon": packageurl.TypeRPM, "fedora": packageurl.TypeRPM, "oracle": packageurl.TypeRPM, "photon": packageurl.TypeRPM,
	"opensuse": packageurl.TypeRPM, "opensuse.leap": packageurl.TypeRPM, "sles": packageurl.TypeRPM,
	"azurelinux": packageurl.TypeRPM, "cbl-mariner": packageurl.TypeRPM,
}

// PURL is the finding's package URL: PkgPURL when the worker recorded it,
// else one computed from the package type, name and version and the image's
// operating system (os may be nil), as Trivy builds it (without the
// architecture, which older results do not record). Empty when the type is
// unknown.
func (f Finding) PURL(os *OSInfo) string {
	if f.PkgPURL != "" {
		return f.PkgPURL
	}
	typ, ok := purlTypes[f.PkgType]
	if !ok || f.PkgName == "" {
		return ""
	}
	name, ns := f.PkgName, ""
	var qs packageurl.Qualifiers
	switch typ {
	case packageurl.TypeApk:
		name = strings.ToLower(name)
		if os != nil {
			ns = strings.ToLower(os.Family)
			qs = packageurl.Qualifiers{{Key: "distro", Value: os.Name}}
		}
	case packageurl.TypeDebian, packageurl.TypeRPM:
		if os != nil {
			ns = os.Family
			qs = packageurl.Qualifiers{{Key: "distro", Value: os.Family + "-" + os.Name}}
		}
	case packageurl.TypeMaven:
		ns, name = splitLast(strings.ReplaceAll(name, ":", "/"))
	case packageurl.TypePyPi:
		name = strings.ToLower(strings.ReplaceAll(name, "_", "-"))
	case packageurl.TypeGolang, packageurl.TypeNPM:
		ns, name = splitLast(strings.ToLower(name))
	case packageurl.TypeComposer:
		ns, name = splitLast(name)
	}
	return packageurl.NewPackageURL(typ, ns, name, f.PkgVersion, qs, "").ToString()
}

func splitLast(s string) (ns, name string) {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return "", s
}

import Foundation
import PackagePlugin

/// Writes `BuildInfo.swift` with the commit the sources were built from (`vae --version`): the
/// abbreviated hash, "+changes" when tracked files differ from it, "unknown" outside a git
/// checkout. Runs before every build; the file is rewritten only when its text changes, so an
/// unchanged commit recompiles nothing.
@main
struct BuildInfo: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "BuildInfo.swift").path
        let root = context.package.directoryURL.path
        let script = """
            c=$(git -C '\(root)' rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
            if [ "$c" != unknown ] && [ -n "$(git -C '\(root)' status --porcelain --untracked-files=no 2>/dev/null | head -c1)" ]; then c="$c+changes"; fi
            line="let buildCommit = \\"$c\\""
            [ "$(cat '\(output)' 2>/dev/null)" = "$line" ] || printf '%s\\n' "$line" > '\(output)'
            """
        return [.prebuildCommand(
            displayName: "Recording the commit for vae --version", executable: URL(fileURLWithPath: "/bin/sh"),
            arguments: ["-c", script], outputFilesDirectory: context.pluginWorkDirectoryURL)]
    }
}

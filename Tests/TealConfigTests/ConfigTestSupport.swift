import TealConfig
import TealCore

/// The description of the error `body` throws, or `nil` when it throws none.
func errorDescription(_ body: () throws(ConfigError) -> Void) -> String? {
    do {
        try body()
        return nil
    } catch {
        return error.description
    }
}

/// The description of the error from parsing `yaml` as `routes/shop.yaml`.
func parseErrorDescription(_ yaml: String) -> String? {
    errorDescription { () throws(ConfigError) in _ = try RouteFileLoader.parseRoute(yaml: yaml, file: "routes/shop.yaml") }
}

/// A minimal valid route file (3 lines) with `extra` appended from line 4 on.
func minimalRoute(_ extra: String = "") -> String {
    """
    route: shop
    blue:
      instances: ["127.0.0.1:9101"]

    """ + extra
}

func address(_ text: String) -> InstanceAddress { InstanceAddress(parsing: text)! }

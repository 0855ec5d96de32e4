// The one module a library user imports: `import SwiftVAE` brings every layer of the library.
@_exported import Datasets
@_exported import Files
@_exported import Imaging
@_exported import NN
@_exported import Reports
@_exported import SafeTensors
@_exported import Tensor
@_exported import Training
@_exported import VAE
